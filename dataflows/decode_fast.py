"""The native fast path: SensorGate telemetry decoded by msgspec, checked in columns.

Each telemetry payload is decoded with a compiled msgspec decoder into a strict wire
shape (no coercions, faults not allowed, finite values, bounded strings); every
reading's time is then checked for the whole batch at once in Arrow (a strict RFC 3339
grammar, then a vectorised parse to integer microseconds) and its range against the
arrival time in numpy. Readings go straight into columns. Anything it does not take is
demoted to the slow path (:mod:`dataflows.decode`), the arbiter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Annotated, Literal

import msgspec
import numpy as np
import numpy.typing as npt
import polars as pl

from contract.events import MAX_READINGS_PER_EVENT
from contract.ids import ID_MAX_LENGTH, ID_PATTERN
from dataflows.batch import MessageBatch
from dataflows.decoded import DecodedBatch
from dataflows.ingest import IngestLimits
from dataflows.registry import Registry

__all__ = [
    "READING_KEY",
    "READING_TIME",
    "READING_VALUE",
    "TRACEPARENT",
    "FastCandidates",
    "FastPath",
    "TelemetryWire",
]

_US = 1_000_000
_MAX_FLOAT = 1.7976931348623157e308
TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_ID = re.compile(ID_PATTERN)
# The times the fast path parses: what Arrow and pydantic read identically. Anything
# else (lower-case 't' or 'z', a space, an offset without a colon) is still valid for
# the contract and takes the slow path.
_RFC3339 = (
    r"^\d{4}-\d{2}-\d{2}T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
    r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$"
)
_UTC_US = pl.Datetime("us", "UTC")
_RFC3339_ASCII = re.compile(_RFC3339, re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_POLARS_FROM = 1_024
"""Times in a call from which polars parses them: its per-call cost (a query and a
regex compiled, about 0.3 ms) outweighs Python's 0.6 µs per time below about 1,200."""

_Finite = Annotated[float, msgspec.Meta(ge=-_MAX_FLOAT, le=_MAX_FLOAT)]


class _ReadingWire(msgspec.Struct, gc=False):
    sensor: str
    metric: str
    time: str
    value: _Finite
    unit: Annotated[str, msgspec.Meta(max_length=32)] = ""
    fault: None = None


class _DataWire(msgspec.Struct, gc=False):
    site: str
    device: str
    sequence: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    readings: Annotated[
        list[_ReadingWire], msgspec.Meta(min_length=1, max_length=MAX_READINGS_PER_EVENT)
    ]
    outbox: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class TelemetryWire(msgspec.Struct, gc=False):
    """A SensorGate telemetry event as the fast path takes it (strict)."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    type: Literal["io.sensorgate.telemetry.reported.v1"]
    time: str
    data: _DataWire
    specversion: Literal["1.0"] = "1.0"
    subject: str | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    traceparent: str | None = None


READING_KEY = attrgetter("sensor", "metric")
READING_VALUE = attrgetter("value")
READING_TIME = attrgetter("time")


@dataclass(slots=True)
class FastCandidates:
    """Fast-path candidates of one batch, before the vectorised checks."""

    index: list[int] = field(default_factory=list)
    device: list[int] = field(default_factory=list)
    wire: list[TelemetryWire] = field(default_factory=list)
    count: list[int] = field(default_factory=list)
    series: list[int | None] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    times: list[str] = field(default_factory=list)


class FastPath:
    """Checks and columnises the fast candidates of one shard's batches."""

    def __init__(self, registry: Registry, limits: IngestLimits) -> None:
        self.registry = registry
        self.limits = limits

    def take(self, batch: MessageBatch, fast: FastCandidates, out: DecodedBatch) -> list[int]:
        """Check and columnise the fast candidates; return the indices demoted to slow."""
        counts = np.asarray(fast.count, dtype=np.int64)
        # Rows per message in ``times``: its readings, then its envelope time.
        rows = counts + 1
        t_all, reading_row, bad_msg = self._check(batch, fast, counts, rows)
        keep_rows = reading_row
        if bad_msg.any():
            keep_rows = reading_row & ~np.repeat(bad_msg, rows)
        sel = np.flatnonzero(keep_rows)
        value_all = np.fromiter(
            _interleave_none(fast.values, counts), dtype=np.float64, count=len(t_all)
        )
        series_all = np.fromiter(
            _interleave_none(fast.series, counts, missing=-1), dtype=np.int32, count=len(t_all)
        )
        out.series = series_all[sel]
        out.t_us = t_all[sel]
        out.value = value_all[sel]
        demoted = []
        for k in range(len(counts)):
            if bad_msg[k]:
                demoted.append(fast.index[k])
                continue
            wire = fast.wire[k]
            out.msg_device.append(fast.device[k])
            out.msg_seq.append(wire.data.sequence)
            out.msg_outbox.append(wire.data.outbox)
            out.msg_own_times.append(True)
            out.msg_received_us.append(batch.received_us[fast.index[k]])
            out.msg_event_id.append(wire.id)
            out.msg_traceparent.append(wire.traceparent)
            out.msg_count.append(fast.count[k])
        return demoted

    def _check(
        self,
        batch: MessageBatch,
        fast: FastCandidates,
        counts: npt.NDArray[np.int64],
        rows: npt.NDArray[np.int64],
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Return every row's time, which rows are readings, and the messages to demote."""
        ends = np.cumsum(rows)
        starts = ends - rows
        bad_msg = np.zeros(len(counts), np.bool_)

        t_all, good_time = _parse_times(fast.times)
        if not good_time.all():
            bad_msg |= np.logical_or.reduceat(~good_time, starts)

        # Readings within the accepted event-time range of their arrival.
        received = np.asarray([batch.received_us[i] for i in fast.index], dtype=np.int64)
        received_rows = np.repeat(received, rows)
        past = int(self.limits.max_past.total_seconds() * _US)
        future = int(self.limits.max_future.total_seconds() * _US)
        reading_row = np.ones(len(t_all), np.bool_)
        reading_row[ends - 1] = False  # the envelope rows are not range-checked
        out_of_range = reading_row & (
            (t_all < received_rows - past) | (t_all > received_rows + future)
        )
        if out_of_range.any():
            bad_msg |= np.logical_or.reduceat(out_of_range, starts)

        # Series: unknown (sensor, metric) keys are registered here, after their ids
        # pass the contract's rule; a bad id sends its message to the slow path.
        if None in fast.series:
            bad_msg |= self._register_series(fast, counts)
        return t_all, reading_row, bad_msg

    def _register_series(
        self, fast: FastCandidates, counts: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        """Register the new series of fast candidates; flag messages with a bad id."""
        bad = np.zeros(len(counts), np.bool_)
        registry = self.registry
        pos = 0
        for k, n in enumerate(counts.tolist()):
            chunk = fast.series[pos : pos + n]
            if None in chunk:
                device = fast.device[k]
                known = registry.series_by_device[device]
                readings = fast.wire[k].data.readings
                new_keys = {(r.sensor, r.metric) for r in readings} - known.keys()
                if registry.refuse_series(device, len(new_keys)) is not None:
                    bad[k] = True  # the slow path files it as a cardinality dead letter
                    fast.series[pos : pos + n] = [-1 if x is None else x for x in chunk]
                    pos += n
                    continue
                for j, reading in enumerate(readings):
                    if chunk[j] is not None:
                        continue
                    key = (reading.sensor, reading.metric)
                    index = known.get(key)
                    if index is None:
                        if not (_valid_id(reading.sensor) and _valid_id(reading.metric)):
                            bad[k] = True  # its rows are dropped: the slow path decides
                            index = -1
                        else:
                            index = registry.add_series(device, reading.sensor, reading.metric)
                    fast.series[pos + j] = index
            pos += n
        return bad


def _interleave_none(
    items: list[float] | list[int | None], counts: npt.NDArray[np.int64], missing: float = 0.0
) -> list[float]:
    """Insert a filler after each message's readings, to align with the time rows."""
    out: list[float] = []
    pos = 0
    for n in counts.tolist():
        # The series list holds no None by now (_register_series filled or demoted them).
        out.extend(items[pos : pos + n])  # type: ignore[arg-type]  # see above
        out.append(missing)
        pos += n
    return out


def _parse_times(
    times: list[str],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Parse RFC 3339 times to µs since the epoch.

    Return the times and which ones parsed: only the strict grammar of ``_RFC3339``
    counts (chrono's ``%+`` alone would take more than the contract does), and an
    impossible date (30 February) fails as well. Many times are parsed by polars in
    compiled code, one query; a few (a paced load hands each shard a few messages per
    call) in Python, which is faster below ``_POLARS_FROM``. A time that either calls
    bad sends its message to the slow path, where the contract decides.
    """
    if len(times) < _POLARS_FROM:
        return _parse_times_python(times)
    return _parse_times_polars(times)


def _parse_times_polars(
    times: list[str],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """:func:`_parse_times` for many times: one polars query (chrono and Rust's regex)."""
    time = pl.col("t")
    parsed = time.str.strptime(_UTC_US, "%+", strict=False, cache=False).dt.epoch("us")
    frame = pl.DataFrame({"t": times}, schema={"t": pl.String}).select(
        us=parsed.fill_null(0), good=time.str.contains(_RFC3339) & parsed.is_not_null()
    )
    us = frame.get_column("us").to_numpy().astype(np.int64, copy=False)
    return us, frame.get_column("good").to_numpy()


def _parse_times_python(
    times: list[str],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """:func:`_parse_times` for a few times: the same grammar, ``datetime`` parses."""
    us = [0] * len(times)
    good = [False] * len(times)
    grammatical, parse = _RFC3339_ASCII.match, datetime.fromisoformat
    for i, text in enumerate(times):
        if grammatical(text) is None:
            continue
        try:
            when = parse(text)
        except ValueError:  # 30 February, year 0
            continue
        us[i] = (when - _EPOCH) // _ONE_US
        good[i] = True
    return np.asarray(us, np.int64), np.asarray(good, np.bool_)


def _valid_id(value: str) -> bool:
    return 0 < len(value) <= ID_MAX_LENGTH and _ID.fullmatch(value) is not None
