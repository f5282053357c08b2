r"""Columnar line protocol: a :class:`~dataflows.columns.PointColumns` in, one body out.

:class:`LineProtocolEncoder` renders a whole micro-batch with polars (compiled string
kernels: ``gather``, ``format``/``concat_str``), never with a Python step per reading,
into two bodies: readings and late readings, and aggregates (each class has its own
retention policy, :mod:`gateway.influx.layout`). Its lines, timestamps in microseconds
(write them with precision ``u``)::

    readings,device=D,metric=M,sensor=S,site=X value=21.5 1767225600000000
    readings,device=D,metric=M,sensor=S,site=X fault="crc error" 1767225600000000
    aggregates,device=D,...,window=10s count=9i,mean=..,min=..,max=..,stddev=..,first=..,last=.. <t>
    late_readings,device=D,...,site=X value=..,seq=7i,watermark=<ns>i,event_id=".." <t>

- Tags are sorted by key and escaped exactly as :func:`~gateway.influx.lineprotocol.escape_tag`
  does (comma, equals sign and space; a backslash is written as it is).
- ``seq`` goes on ``readings`` lines only when the encoder is built with ``include_seq``.
- A non-finite value (NaN, ±inf) is never written: influxd refuses it. Its field is
  left out, and a line left without any field is dropped and counted in
  :attr:`LineProtocolEncoder.dropped`. A fault reading (NaN value, text in
  ``ReadingColumns.faults``) carries ``fault="..."`` instead of ``value``.
- Floats are rendered by polars as the shortest text that reads back to the same
  double (``20.0``, ``1e+308``, ``5e-324``, ``-0.0``), which influxd 1.6 parses
  exactly (``tests/integration/test_encoder_influxd.py`` writes and reads them back).

The escaped tags of a series are computed once, when its row first appears in a
:class:`~dataflows.columns.SeriesNames` table, and kept as a polars Series per table
(extended as the table grows); an encode then only gathers them by index. The cache
holds the ``max_tables`` most recently used tables.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from dataflows.columns import (
    AggregateColumns,
    EncodedPoints,
    LateColumns,
    PointColumns,
    ReadingColumns,
    SeriesNames,
)
from gateway.influx.lineprotocol import escape_tag, field_string

__all__ = ["AGGREGATE_FIELDS", "LineProtocolEncoder"]

AGGREGATE_FIELDS: tuple[str, ...] = ("count", "mean", "min", "max", "stddev", "first", "last")
"""Every field an ``aggregates`` line can carry, in the order they are written."""

PRECISION = "u"
"""The timestamp precision of every line the encoder renders."""

# Tag keys in sorted order, and the SeriesNames column of each.
_TAG_KEYS = ("device", "metric", "sensor", "site")
_RECHUNK_AT = 16


def _escaped(values: Sequence[str]) -> pl.Series:
    """Escape a column of tag values as :func:`escape_tag` does, vectorised."""
    s = pl.Series(values, dtype=pl.String)
    return (
        s.str.replace_all(",", "\\,", literal=True)
        .str.replace_all("=", "\\=", literal=True)
        .str.replace_all(" ", "\\ ", literal=True)
    )


@dataclass(slots=True)
class _Table:
    """The escaped tags of one SeriesNames table, row for row.

    Only the tags are kept: the measurement and the field key around them are literals
    of each line's format, not two more cached strings per series (they took twice the
    memory of the tags, about 17 MB at 100,000 series, for no speed).
    """

    size: int = 0
    tags: pl.Series = field(default_factory=lambda: pl.Series(dtype=pl.String))
    """``device=..,metric=..,sensor=..,site=..`` per row."""

    def extend(self, names: SeriesNames) -> None:
        """Escape the rows added to ``names`` since the last call."""
        n = len(names)
        if n <= self.size:
            return
        lo = self.size
        frame = pl.DataFrame({key: _escaped(getattr(names, key)[lo:n]) for key in _TAG_KEYS})
        new = frame.select(tags=pl.format("device={},metric={},sensor={},site={}", *_TAG_KEYS))
        self.tags = _append(self.tags, new["tags"])
        self.size = n


def _append(old: pl.Series, new: pl.Series) -> pl.Series:
    if not len(old):
        return new.rechunk()
    out = old.append(new)
    # A table grows by a few rows per batch; gathering from many chunks costs more.
    return out.rechunk() if out.n_chunks() > _RECHUNK_AT else out


def _finite_or_null(values: npt.NDArray[np.float64]) -> pl.Series:
    """Return ``values`` as a Float64 Series, every non-finite value a null."""
    series = pl.Series(values, dtype=pl.Float64)
    if np.isfinite(values).all():
        return series
    return pl.Series(np.where(np.isfinite(values), values, np.nan), nan_to_null=True)


def _concatenated(frame: pl.DataFrame, line: pl.Expr) -> bytes:
    """Return the lines ``line`` renders from ``frame``, end to end, as UTF-8 bytes.

    Joined and cast to binary inside polars, so the body
    is copied out once: through a Python ``str`` it took two copies more, each the
    size of the whole body, at the moment memory peaks (measured with memray: the
    bodies of a burst's batches were its largest transient allocation).
    """
    return bytes(frame.select(line.str.join("").cast(pl.Binary)).item())


def _joined(parts: list[bytes]) -> bytes:
    if len(parts) == 1:
        return parts[0]
    return b"".join(parts)


def _check_series(kind: str, series: npt.NDArray[np.int32], names: SeriesNames) -> None:
    if len(series) and (int(series.min()) < 0 or int(series.max()) >= len(names)):
        raise ValueError(
            f"{kind}: series index out of range: the SeriesNames table has {len(names)} rows,"
            f" got indices {int(series.min())}..{int(series.max())}"
        )


class LineProtocolEncoder:
    r"""Encode :class:`~dataflows.columns.PointColumns` as line protocol (precision ``u``).

    Implements :class:`~dataflows.columns.PointEncoder`. ``include_seq`` adds
    ``seq=<n>i`` to ``readings`` lines; ``aggregate_fields`` chooses the fields of
    ``aggregates`` lines (a subset of :data:`AGGREGATE_FIELDS`; within a line, the
    fields finite on every row of the batch come first, the order InfluxDB ignores);
    ``max_tables`` bounds the tag cache (least recently used tables are forgotten).
    Thread-safe (one lock per call); build one per sink partition.

    >>> import numpy as np
    >>> from dataflows.columns import PointColumns, ReadingColumns, SeriesNames
    >>> names = SeriesNames()
    >>> names.add("plant 1", "pump,7", "env", "temp")
    0
    >>> readings = ReadingColumns(
    ...     series=np.array([0], np.int32),
    ...     t_us=np.array([1_767_225_600_000_000]),
    ...     value=np.array([21.5]),
    ...     seq=np.array([3]),
    ... )
    >>> LineProtocolEncoder().encode(PointColumns(names, readings=readings))
    b'readings,device=pump\\,7,metric=temp,sensor=env,site=plant\\ 1 value=21.5 1767225600000000\n'
    """

    precision = PRECISION

    def __init__(
        self,
        *,
        include_seq: bool = False,
        aggregate_fields: Sequence[str] = AGGREGATE_FIELDS,
        max_tables: int = 1024,
    ) -> None:
        unknown = set(aggregate_fields) - set(AGGREGATE_FIELDS)
        if unknown or not aggregate_fields:
            raise ValueError(
                f"aggregate_fields must be a non-empty subset of {AGGREGATE_FIELDS};"
                f" got {tuple(aggregate_fields)!r}"
            )
        if max_tables < 1:
            raise ValueError(f"max_tables must be at least 1; got {max_tables}")
        self.include_seq = include_seq
        self.aggregate_fields = tuple(f for f in AGGREGATE_FIELDS if f in aggregate_fields)
        self.max_tables = max_tables
        self.dropped = 0
        """Lines left out because no field of theirs had a finite value (monotonic)."""
        self._tables: OrderedDict[int, _Table] = OrderedDict()
        self._lock = threading.Lock()
        self._window_cache: dict[tuple[str, ...], pl.Series] = {}

    def encode(self, points: PointColumns) -> bytes:
        """Return the newline-terminated lines for ``points`` (b"" when empty), in one body."""
        encoded = self.encode_points(points)
        return encoded.body + encoded.aggregates_body

    def encode_parts(self, points: PointColumns) -> tuple[bytes, bytes]:
        """Return (readings and late readings, aggregates): one body per retention class."""
        encoded = self.encode_points(points)
        return encoded.body, encoded.aggregates_body

    def encode_points(self, points: PointColumns) -> EncodedPoints:
        """Return the bodies for ``points`` and how many lines of each measurement they hold.

        ``body`` holds the readings and late readings, ``aggregates_body`` the
        aggregates: they go to different retention policies.
        """
        if points.empty:
            return EncodedPoints(body=b"", lines=0)
        with self._lock:
            table = self._table(points.names)
            raw: list[bytes] = []
            aggregates: list[bytes] = []
            n_readings = n_aggregates = n_late = 0
            if points.readings is not None and len(points.readings):
                n_readings = self._readings(table, points.names, points.readings, raw)
            if points.aggregates is not None and len(points.aggregates):
                n_aggregates = self._aggregates(table, points.names, points.aggregates, aggregates)
            if points.late is not None and len(points.late):
                n_late = self._late(table, points.names, points.late, raw)
        return EncodedPoints(
            body=_joined(raw),
            aggregates_body=_joined(aggregates),
            lines=n_readings + n_aggregates + n_late,
            readings=n_readings,
            aggregates=n_aggregates,
            late=n_late,
        )

    def cached_rows(self, names: SeriesNames) -> int:
        """Return how many rows of ``names`` have their escaped tags cached (0: none)."""
        with self._lock:
            table = self._tables.get(names.uid)
            return table.size if table is not None else 0

    def _table(self, names: SeriesNames) -> _Table:
        table = self._tables.get(names.uid)
        if table is None:
            table = self._tables[names.uid] = _Table()
            while len(self._tables) > self.max_tables:
                self._tables.popitem(last=False)
        else:
            self._tables.move_to_end(names.uid)
        table.extend(names)
        return table

    def _readings(
        self, table: _Table, names: SeriesNames, r: ReadingColumns, parts: list[bytes]
    ) -> int:
        _check_series("readings", r.series, names)
        n = len(r)
        keep = np.isfinite(r.value)
        fault_rows: list[int] = []
        if r.faults:
            fault_rows = sorted(r.faults)
            if fault_rows[0] < 0 or fault_rows[-1] >= n:
                raise ValueError(
                    f"readings: fault rows must lie in 0..{n - 1};"
                    f" got {fault_rows[0]}..{fault_rows[-1]}"
                )
            keep[fault_rows] = False
        kept = int(keep.sum())
        if kept:
            if kept == n:
                series, value, t_us, seq = r.series, r.value, r.t_us, r.seq
            else:
                series, value, t_us, seq = r.series[keep], r.value[keep], r.t_us[keep], r.seq[keep]
            frame = pl.DataFrame({"tags": table.tags.gather(series), "value": value, "t": t_us})
            if self.include_seq:
                frame = frame.with_columns(seq=pl.Series(seq))
                line = pl.format("readings,{} value={},seq={}i {}\n", "tags", "value", "seq", "t")
            else:
                line = pl.format("readings,{} value={} {}\n", "tags", "value", "t")
            parts.append(_concatenated(frame, line))
        if fault_rows:
            rows = np.array(fault_rows, np.int64)
            tags = table.tags.gather(r.series[rows]).to_list()
            faults = r.faults or {}
            seqs = r.seq[rows].tolist()
            times = r.t_us[rows].tolist()
            lines = []
            for row, tag, seq_n, t in zip(fault_rows, tags, seqs, times, strict=True):
                extra = f",seq={seq_n}i" if self.include_seq else ""
                lines.append(f"readings,{tag} fault={field_string(faults[row])}{extra} {t}")
            parts.append(("\n".join(lines) + "\n").encode())
        self.dropped += n - kept - len(fault_rows)
        return kept + len(fault_rows)

    def _windows(self, window_names: tuple[str, ...]) -> pl.Series:
        cached = self._window_cache.get(window_names)
        if cached is None:
            cached = pl.Series([escape_tag(w) for w in window_names], dtype=pl.String)
            if len(self._window_cache) > 64:
                self._window_cache.clear()
            self._window_cache[window_names] = cached
        return cached

    def _aggregates(
        self, table: _Table, names: SeriesNames, a: AggregateColumns, parts: list[bytes]
    ) -> int:
        _check_series("aggregates", a.series, names)
        n = len(a)
        window = a.window.astype(np.int32)
        if n and (int(window.min()) < 0 or int(window.max()) >= len(a.window_names)):
            raise ValueError(
                f"aggregates: window index out of range of window_names {a.window_names!r}"
            )
        floats = [f for f in self.aggregate_fields if f != "count"]
        if "count" in self.aggregate_fields:
            keep = np.ones(n, dtype=bool)
        else:
            keep = np.zeros(n, dtype=bool)
            for name in floats:
                keep |= np.isfinite(getattr(a, name))
        kept = int(keep.sum())
        self.dropped += n - kept
        if not kept:
            return 0
        every_row = kept == n

        def sel(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return values if every_row else values[keep]

        columns: dict[str, pl.Series] = {
            "tags": table.tags.gather(sel(a.series)),
            "window": self._windows(a.window_names).gather(sel(window)),
            "t": pl.Series(sel(a.start_us)),
        }
        # Fields finite on every row go into one format string; the others (stddev of
        # one-reading windows...) are added where finite. Field order does not matter
        # to InfluxDB, so the ever-present ones lead and carry no comma trouble.
        always: list[str] = []
        sometimes: list[str] = []
        for name in self.aggregate_fields:
            values = sel(a.count if name == "count" else getattr(a, name))
            if name == "count" or np.isfinite(values).all():
                columns[name] = pl.Series(values)
                always.append(name)
            else:
                columns[name] = _finite_or_null(values)
                sometimes.append(name)
        if always:
            template = ",".join("count={}i" if f == "count" else f"{f}={{}}" for f in always)
            pieces = [pl.format(template, *always)]
            pieces += [pl.format(f",{f}={{}}", f).fill_null("") for f in sometimes]
            fields = pl.concat_str(pieces)
        else:
            fields = pl.concat_str(
                [pl.format(f"{f}={{}}", f) for f in sometimes], separator=",", ignore_nulls=True
            )
        frame = pl.DataFrame(columns)
        parts.append(
            _concatenated(
                frame, pl.format("aggregates,{},window={} {} {}\n", "tags", "window", fields, "t")
            )
        )
        return kept

    def _late(
        self, table: _Table, names: SeriesNames, late: LateColumns, parts: list[bytes]
    ) -> int:
        # Rare: a Python line per row is fine here.
        _check_series("late", late.series, names)
        tags = table.tags.gather(late.series).to_list()
        lines = []
        for tag, t, value, seq, watermark, event_id in zip(
            tags,
            late.t_us.tolist(),
            late.value.tolist(),
            late.seq.tolist(),
            late.watermark_us.tolist(),
            late.event_id,
            strict=True,
        ):
            head = f"value={value!r}," if np.isfinite(value) else ""
            lines.append(
                f"late_readings,{tag} {head}seq={seq}i,watermark={watermark * 1000}i"
                f",event_id={field_string(event_id)} {t}"
            )
        parts.append(("\n".join(lines) + "\n").encode())
        return len(lines)
