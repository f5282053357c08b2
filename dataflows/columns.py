"""Columnar batches: what the shard step hands to storage, one array per field.

The data plane never builds a Python object per reading. A shard step's output for
storage is one :class:`PointColumns`: fresh readings, closed-window aggregates and late
readings as numpy arrays, each row naming its series by an index into the shard's
:class:`SeriesNames` table. A :class:`PointEncoder` (InfluxDB line protocol, in the
gateway) turns that into the bytes of one write; the dataflow itself knows no storage
format.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "AggregateColumns",
    "EncodedPoints",
    "LateColumns",
    "PointColumns",
    "PointEncoder",
    "ReadingColumns",
    "SeriesNames",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]

_uids = itertools.count(1)


@dataclass(eq=False, slots=True)
class SeriesNames:
    """The names of a shard's series: row ``i`` is series ``i``. Append-only.

    Rows never change once added, so an encoder may cache what it derives from a row
    (escaped tags) under ``(uid, i)``; ``uid`` is unique per table in a process.
    """

    site: list[str] = field(default_factory=list)
    device: list[str] = field(default_factory=list)
    sensor: list[str] = field(default_factory=list)
    metric: list[str] = field(default_factory=list)
    uid: int = field(default_factory=lambda: next(_uids))

    def __len__(self) -> int:
        return len(self.sensor)

    def add(self, site: str, device: str, sensor: str, metric: str) -> int:
        """Append a series; return its index."""
        self.site.append(site)
        self.device.append(device)
        self.sensor.append(sensor)
        self.metric.append(metric)
        return len(self.sensor) - 1


@dataclass(frozen=True, slots=True)
class ReadingColumns:
    """Fresh (deduplicated) readings: every reading of every new telemetry event."""

    series: I32
    t_us: I64
    value: F64
    """NaN where the reading is a fault (its text is in ``faults``)."""
    seq: I64
    """The sequence of the event each reading came in."""
    faults: dict[int, str] | None = None
    """Row -> fault text, for the rare readings that carry a fault instead of a value."""

    def __len__(self) -> int:
        return len(self.series)


@dataclass(frozen=True, slots=True)
class AggregateColumns:
    """Closed windows, one row per (series, window): written once, when the window closes."""

    series: I32
    window: npt.NDArray[np.int8]
    """Index into ``window_names``."""
    window_names: tuple[str, ...]
    start_us: I64
    count: I64
    mean: F64
    min: F64
    max: F64
    stddev: F64
    """NaN for a window of one reading (and where the value is not finite)."""
    first: F64
    last: F64

    def __len__(self) -> int:
        return len(self.series)


@dataclass(frozen=True, slots=True)
class LateColumns:
    """Readings that arrived after the windows they belonged to had closed."""

    series: I32
    t_us: I64
    value: F64
    seq: I64
    watermark_us: I64
    event_id: list[str]

    def __len__(self) -> int:
        return len(self.series)


@dataclass(frozen=True, slots=True)
class PointColumns:
    """Everything one shard step gives storage for one batch."""

    names: SeriesNames
    readings: ReadingColumns | None = None
    aggregates: AggregateColumns | None = None
    late: LateColumns | None = None

    @property
    def empty(self) -> bool:
        """Whether there is nothing to write."""
        return not (
            (self.readings is not None and len(self.readings))
            or (self.aggregates is not None and len(self.aggregates))
            or (self.late is not None and len(self.late))
        )


@dataclass(frozen=True, slots=True)
class EncodedPoints:
    """The bytes of one write, and what they hold (for metrics).

    Two bodies, because raw data and aggregates are kept for different times (each is
    written to its own retention policy): ``body`` holds the readings and late
    readings, ``aggregates_body`` the aggregates. ``lines`` counts both.
    """

    body: bytes
    """Newline-terminated readings and late readings (every line when
    ``aggregates_body`` is empty), ready to post."""
    lines: int
    readings: int = 0
    aggregates: int = 0
    late: int = 0
    aggregates_body: bytes = b""
    """Newline-terminated aggregates (``aggregates`` lines of them)."""
    received_us: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    """Arrival time of each fresh message whose readings are in ``body`` (latency metrics)."""
    newest_us: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    """Newest reading time of each of those messages (end-to-end lag metrics)."""


class PointEncoder(Protocol):
    """Turns columns into the bytes of a write (the gateway's line protocol encoder)."""

    def encode(self, points: PointColumns) -> bytes:
        """Return the newline-terminated lines for ``points`` (b"" when empty)."""

    def encode_parts(self, points: PointColumns) -> tuple[bytes, bytes]:
        """Return (readings and late readings, aggregates) as two bodies of lines."""
