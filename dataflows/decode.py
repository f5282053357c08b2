"""Decode a shard's batch of raw messages into columns, or dead letters.

Two paths, one arbiter. The *fast path* decodes each telemetry payload with a compiled
msgspec decoder into a strict wire shape (no coercions, faults not allowed, finite
values, bounded strings), then checks every reading's time for the whole batch at once
in Arrow (a strict RFC 3339 grammar, then a vectorised parse to integer microseconds)
and its range against the arrival time in numpy. Readings go straight into columns:
a series index (a C-level dict lookup per reading, through ``map``), an int64 time and a
float64 value. No Python code runs per reading.

Anything the fast path does not take (a fault reading, a lax but valid value such as
``"12.5"``, an unusual time format, an invalid payload) goes to the *slow path*: the
contract's pydantic models through :class:`~dataflows.ingest.Ingestor`, exactly as
before. The slow path is the arbiter: it decides acceptance and the dead-letter reason,
so every bad input still becomes the same dead letter. The fast path only ever accepts
a subset of what the slow path accepts, with identical values (a property test holds
this). Status and command messages (rare) always take the slow path.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Annotated, Literal

import msgspec
import numpy as np
import numpy.typing as npt
import polars as pl

from contract import DeadLetterReason, TopicError, TopicKind, TopicScheme
from contract.events import MAX_READINGS_PER_EVENT
from contract.ids import ID_MAX_LENGTH, ID_PATTERN
from dataflows.adapters.adapterset import AdapterSet
from dataflows.adapters.result import Command, Telemetry
from dataflows.batch import MessageBatch
from dataflows.eventclock import from_us, to_us
from dataflows.ingest import (
    Accepted,
    CommandIn,
    IngestLimits,
    Ingestor,
    RawMessage,
    Rejected,
    StatusIn,
)
from dataflows.registry import Registry

__all__ = ["BatchDecoder", "DecodedBatch"]

_US = 1_000_000
_MAX_FLOAT = 1.7976931348623157e308
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_ID = re.compile(ID_PATTERN)
# The times the fast path parses: what Arrow and pydantic read identically. Anything
# else (lower-case 't' or 'z', a space, an offset without a colon) is still valid for
# the contract and takes the slow path.
_RFC3339 = (
    r"^\d{4}-\d{2}-\d{2}T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
    r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$"
)
_UTC_US = pl.Datetime("us", "UTC")

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


class _TelemetryWire(msgspec.Struct, gc=False):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    type: Literal["io.sensorgate.telemetry.reported.v1"]
    time: str
    data: _DataWire
    specversion: Literal["1.0"] = "1.0"
    subject: str | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    traceparent: str | None = None


_KEY = attrgetter("sensor", "metric")
_VALUE = attrgetter("value")
_TIME = attrgetter("time")


@dataclass(slots=True)
class DecodedBatch:
    """The accepted telemetry of a batch as columns, and everything else.

    Message arrays (one entry per accepted telemetry message, in processing order) and
    reading arrays (one entry per reading; a message's readings are contiguous, in
    order, ``msg_count`` of them).
    """

    msg_device: list[int] = field(default_factory=list)
    msg_seq: list[int] = field(default_factory=list)
    msg_outbox: list[str | None] = field(default_factory=list)
    msg_own_times: list[bool] = field(default_factory=list)
    """Whether the message's reading times are its own (SensorGate telemetry), not the
    arrival time an adapter gave readings that carry none: only then does a redelivery
    carry the same times as its first delivery."""
    msg_received_us: list[int] = field(default_factory=list)
    msg_event_id: list[str] = field(default_factory=list)
    msg_traceparent: list[str | None] = field(default_factory=list)
    msg_count: list[int] = field(default_factory=list)
    series: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    t_us: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    value: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0, np.float64))
    """NaN for a fault reading (its text in ``faults``)."""
    faults: dict[int, str] = field(default_factory=dict)
    events: list[StatusIn | CommandIn] = field(default_factory=list)
    """Status and command messages, in batch order (rare: per-event objects)."""
    rejected: list[Rejected] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    """Messages adapters asked the gateway to publish (Sparkplug rebirth requests)."""
    adapter_skipped: int = 0
    """Values adapters skipped by design (strings, datasets, excluded fields)."""
    adapter_ignored: list[str] = field(default_factory=list)
    """Why adapters deliberately left whole messages unmapped (one entry each)."""

    @property
    def messages(self) -> int:
        """Accepted telemetry messages."""
        return len(self.msg_device)

    @property
    def readings(self) -> int:
        """Readings in accepted telemetry."""
        return len(self.series)


@dataclass(slots=True)
class _Fast:
    """Fast-path candidates of one batch, before the vectorised checks."""

    index: list[int] = field(default_factory=list)
    device: list[int] = field(default_factory=list)
    wire: list[_TelemetryWire] = field(default_factory=list)
    count: list[int] = field(default_factory=list)
    series: list[int | None] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    times: list[str] = field(default_factory=list)


class BatchDecoder:
    """Decodes the batches of one shard against that shard's :class:`Registry`."""

    _TOPIC_CACHE_MAX = 200_000

    def __init__(
        self,
        topics: TopicScheme,
        registry: Registry,
        limits: IngestLimits | None = None,
        adapters: AdapterSet | None = None,
    ) -> None:
        self.topics = topics
        self.adapters = adapters
        """Foreign dialects (Zigbee2MQTT, Tasmota...): this shard's adapters, with their
        state; None when no adapters file is configured."""
        self.registry = registry
        self.limits = limits or IngestLimits()
        self.ingestor = Ingestor(topics, self.limits)
        self._decoder = msgspec.json.Decoder(_TelemetryWire)
        self._topics: dict[str, tuple[TopicKind, str, str] | None] = {}
        self.fast_messages = 0
        """Telemetry messages the fast path took (for tests and metrics)."""
        self.slow_messages = 0

    def _where(self, topic: str) -> tuple[TopicKind, str, str] | None:
        where: tuple[TopicKind, str, str] | Literal[False] | None
        where = self._topics.get(topic, False)  # False: not cached (None: not ours)
        if where is False:
            try:
                parsed = self.topics.parse(topic)
                where = (parsed.kind, parsed.site, parsed.device)
            except TopicError:
                where = None
            if len(self._topics) >= self._TOPIC_CACHE_MAX:
                self._topics.clear()
            self._topics[topic] = where
        return where

    def is_event(self, topic: str) -> bool:
        """Whether ``topic`` carries status or commands (per-event messages)."""
        where = self._where(topic)
        return where is not None and where[0] in (TopicKind.STATUS, TopicKind.COMMANDS)

    def segments(self, batch: MessageBatch) -> list[MessageBatch]:
        """Split a batch at status and command messages, which must keep their place.

        An acknowledgement that arrived before the reading that clears its alarm must
        be applied before it: runs of telemetry are decoded together, and each status
        or command message is handled on its own, in order.
        """
        kinds = [self.is_event(topic) for topic in batch.topics]
        if not any(kinds):
            return [batch]
        segments: list[MessageBatch] = []
        run = MessageBatch()
        for is_event, topic, payload, received in zip(
            kinds, batch.topics, batch.payloads, batch.received_us, strict=True
        ):
            if is_event:
                if len(run):
                    segments.append(run)
                    run = MessageBatch()
                segments.append(MessageBatch([topic], [payload], [received]))
            else:
                run.append(topic, payload, received)
        if len(run):
            segments.append(run)
        return segments

    def decode(self, batch: MessageBatch) -> DecodedBatch:
        """Decode ``batch``: columns of accepted telemetry, events, dead letters."""
        out = DecodedBatch()
        fast = _Fast()
        slow: list[int] = []
        registry = self.registry
        max_bytes = self.limits.max_payload_bytes
        decode = self._decoder.decode
        foreign: list[int] = []
        for i, (topic, payload) in enumerate(zip(batch.topics, batch.payloads, strict=True)):
            where = self._where(topic)
            if where is None and self.adapters is not None and self._foreign(topic):
                foreign.append(i)
                continue
            if where is None or where[0] is not TopicKind.TELEMETRY or len(payload) > max_bytes:
                slow.append(i)  # bad topics, status, commands, oversize: the slow path
                continue
            try:
                wire = decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                # msgspec raises RecursionError on deep nesting ([[[[...): the arbiter
                # files it as a dead letter like any other payload it refuses.
                slow.append(i)
                continue
            data = wire.data
            if (
                data.site != where[1]
                or data.device != where[2]
                or (wire.traceparent is not None and not _TRACEPARENT.fullmatch(wire.traceparent))
            ):
                slow.append(i)
                continue
            device = registry.find_device(data.site, data.device)
            if device is None:
                if registry.refuse_device(data.site, data.device) is not None:
                    slow.append(i)  # the slow path files it (cardinality, or worse)
                    continue
                device = registry.device(data.site, data.device)
            readings = data.readings
            known = registry.series_by_device[device]
            fast.index.append(i)
            fast.device.append(device)
            fast.wire.append(wire)
            fast.count.append(len(readings))
            fast.series.extend(map(known.get, map(_KEY, readings)))
            fast.values.extend(map(_VALUE, readings))
            fast.times.extend(map(_TIME, readings))
            fast.times.append(wire.time)  # the envelope's time is checked with the rest
        if fast.index:
            slow.extend(self._take_fast(batch, fast, out))
        self.fast_messages += len(out.msg_device)
        if slow:
            self._take_slow(batch, sorted(slow), out)
        if foreign:
            self._take_foreign(batch, foreign, out)
        return out

    def _foreign(self, topic: str) -> bool:
        """Whether an adapter takes ``topic`` (cached like the native topics)."""
        assert self.adapters is not None
        return self.adapters.adapter_for(topic) is not None

    def _take_foreign(self, batch: MessageBatch, indices: list[int], out: DecodedBatch) -> None:
        """Map foreign messages with their adapters; append what they became.

        Per message Python (foreign payloads are small: a device's state); the readings
        join the same columns as native telemetry, so dedupe, windows and rules follow.
        """
        assert self.adapters is not None
        registry = self.registry
        max_bytes = self.limits.max_payload_bytes
        past = int(self.limits.max_past.total_seconds() * _US)
        future = int(self.limits.max_future.total_seconds() * _US)
        series: list[int] = []
        times: list[int] = []
        values: list[float] = []
        for i in indices:
            topic, payload, received = batch.topics[i], batch.payloads[i], batch.received_us[i]
            raw = RawMessage(topic, payload, from_us(received))
            if len(payload) > max_bytes:
                out.rejected.append(
                    Rejected(
                        raw,
                        DeadLetterReason.OVERSIZE,
                        f"payload is {len(payload)} bytes; the limit is {max_bytes}",
                    )
                )
                continue
            result = self.adapters.adapt(topic, payload, received)
            if result is None:  # no adapter after all (cache out of date): native rules
                self._take_slow(batch, [i], out)
                continue
            for error in result.errors:
                out.rejected.append(Rejected(raw, error.reason, error.text))
            out.events.extend(
                StatusIn(change.to_event(), from_us(change.t_us)) for change in result.status
            )
            out.commands.extend(result.commands)
            out.adapter_skipped += result.skipped
            if result.ignored is not None:
                out.adapter_ignored.append(result.ignored)
            for tel in result.telemetry:
                bad = next(
                    (t for t in tel.t_us if not received - past <= t <= received + future), None
                )
                if bad is not None:
                    out.rejected.append(
                        Rejected(
                            raw,
                            DeadLetterReason.TIMESTAMP_OUT_OF_RANGE,
                            f"device {tel.device!r}: a reading has time {from_us(bad).isoformat()};"
                            f" accepted times are from {from_us(received - past).isoformat()}"
                            f" to {from_us(received + future).isoformat()}",
                        )
                    )
                    continue
                refusal = registry.refuse_device(tel.site, tel.device) or registry.refuse_series(
                    registry.find_device(tel.site, tel.device),
                    len(set(zip(tel.sensor, tel.metric, strict=True)) - _known(registry, tel)),
                )
                if refusal is not None:
                    out.rejected.append(Rejected(raw, DeadLetterReason.CARDINALITY, refusal))
                    continue
                device = registry.device(tel.site, tel.device)
                known = registry.series_by_device[device]
                count = 0
                for sensor, metric, value, t in zip(
                    tel.sensor, tel.metric, tel.value, tel.t_us, strict=True
                ):
                    if not math.isfinite(value):  # adapters should not; never store it
                        out.adapter_skipped += 1
                        continue
                    count += 1
                    index = known.get((sensor, metric))
                    if index is None:
                        index = registry.add_series(device, sensor, metric)
                    series.append(index)
                    times.append(t)
                    values.append(value)
                out.msg_device.append(device)
                out.msg_seq.append(tel.sequence)
                out.msg_outbox.append(None)
                out.msg_own_times.append(False)
                out.msg_received_us.append(received)
                out.msg_event_id.append(tel.event_id)
                out.msg_traceparent.append(None)
                out.msg_count.append(count)
        if series:
            out.series = np.concatenate([out.series, np.asarray(series, np.int32)])
            out.t_us = np.concatenate([out.t_us, np.asarray(times, np.int64)])
            out.value = np.concatenate([out.value, np.asarray(values, np.float64)])

    def _take_fast(self, batch: MessageBatch, fast: _Fast, out: DecodedBatch) -> list[int]:
        """Check and columnise the fast candidates; return the indices demoted to slow."""
        counts = np.asarray(fast.count, dtype=np.int64)
        n_msgs = len(counts)
        # Rows per message in ``times``: its readings, then its envelope time.
        rows = counts + 1
        ends = np.cumsum(rows)
        starts = ends - rows
        bad_msg = np.zeros(n_msgs, np.bool_)

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
        series = fast.series
        if None in series:
            bad_msg |= self._register_series(fast, counts)

        keep_rows = reading_row
        if bad_msg.any():
            keep_rows = reading_row & ~np.repeat(bad_msg, rows)
        sel = np.flatnonzero(keep_rows)
        value_all = np.fromiter(
            _interleave_none(fast.values, counts), dtype=np.float64, count=len(t_all)
        )
        series_all = np.fromiter(
            _interleave_none(series, counts, missing=-1), dtype=np.int32, count=len(t_all)
        )
        out.series = series_all[sel]
        out.t_us = t_all[sel]
        out.value = value_all[sel]
        demoted = []
        for k in range(n_msgs):
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

    def _register_series(self, fast: _Fast, counts: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
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

    def _refusal(self, result: Accepted | StatusIn | CommandIn) -> str | None:
        """Why an accepted message would go past the caps on devices and series."""
        registry = self.registry
        if isinstance(result, CommandIn):
            site, device = result.command.data.site, result.command.data.device
        else:
            site, device = result.event.data.site, result.event.data.device
        refusal = registry.refuse_device(site, device)
        if refusal is not None or not isinstance(result, Accepted):
            return refusal
        index = registry.find_device(site, device)
        keys = {(r.sensor, r.metric) for r in result.event.data.readings}
        if index is not None:
            keys -= registry.series_by_device[index].keys()
        return registry.refuse_series(index, len(keys))

    def _take_slow(self, batch: MessageBatch, indices: list[int], out: DecodedBatch) -> None:
        """Decode ``indices`` with the contract's models; append accepted telemetry."""
        registry = self.registry
        series: list[int] = []
        times: list[int] = []
        values: list[float] = []
        base = len(out.series)
        accepted = 0
        for i in indices:
            msg = RawMessage(batch.topics[i], batch.payloads[i], from_us(batch.received_us[i]))
            result = self.ingestor.accept(msg)
            if isinstance(result, Rejected):
                out.rejected.append(result)
                continue
            refusal = self._refusal(result)
            if refusal is not None:
                out.rejected.append(Rejected(msg, DeadLetterReason.CARDINALITY, refusal))
                continue
            if not isinstance(result, Accepted):
                out.events.append(result)
                continue
            accepted += 1
            data = result.event.data
            device = registry.device(data.site, data.device)
            known = registry.series_by_device[device]
            for reading in data.readings:
                index = known.get((reading.sensor, reading.metric))
                if index is None:
                    index = registry.add_series(device, reading.sensor, reading.metric)
                if reading.value is None:
                    out.faults[base + len(series)] = reading.fault or ""
                    values.append(float("nan"))
                else:
                    values.append(float(reading.value))
                series.append(index)
                times.append(to_us(reading.time))
            out.msg_device.append(device)
            out.msg_seq.append(data.sequence)
            out.msg_outbox.append(data.outbox)
            out.msg_own_times.append(True)
            out.msg_received_us.append(batch.received_us[i])
            out.msg_event_id.append(result.event.id)
            out.msg_traceparent.append(result.event.traceparent)
            out.msg_count.append(len(data.readings))
        self.slow_messages += accepted
        if series:
            out.series = np.concatenate([out.series, np.asarray(series, np.int32)])
            out.t_us = np.concatenate([out.t_us, np.asarray(times, np.int64)])
            out.value = np.concatenate([out.value, np.asarray(values, np.float64)])


def _known(registry: Registry, tel: Telemetry) -> set[tuple[str, str]]:
    """Return the (sensor, metric) keys already registered for an adapter's device."""
    index = registry.find_device(tel.site, tel.device)
    return set() if index is None else set(registry.series_by_device[index])


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
    """Parse RFC 3339 times to µs since the epoch, in compiled code.

    Return the times and which ones parsed: only the strict grammar of ``_RFC3339``
    counts (chrono's ``%+`` alone would take more than the contract does), and an
    impossible date (30 February) fails as well.
    """
    column = pl.Series(times, dtype=pl.String)
    grammatical = column.str.contains(_RFC3339)
    parsed = column.str.strptime(_UTC_US, "%+", strict=False, cache=False).dt.epoch("us")
    good = (grammatical & parsed.is_not_null()).to_numpy()
    return parsed.fill_null(0).to_numpy().astype(np.int64, copy=False), good


def _valid_id(value: str) -> bool:
    return 0 < len(value) <= ID_MAX_LENGTH and _ID.fullmatch(value) is not None
