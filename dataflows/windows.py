"""Event-time windows of one device's series, and their aggregates.

Pure Python, no Bytewax. Times are integer microseconds since the Unix epoch (UTC),
so window bounds are exact. Windows are aligned to the epoch: a 10 s window starts
at a multiple of 10 s. A sliding window of length L and step S holds each reading in
L/S windows; a tumbling window is a sliding window whose step is its length.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["Accumulator", "Aggregate", "SeriesWindows", "WindowSpec", "parse_window"]

_US = 1_000_000
_UNITS = {"ms": 1_000, "s": _US, "m": 60 * _US, "h": 3600 * _US, "d": 86_400 * _US}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")


def _parse_duration(text: str) -> int:
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration like 10s, 1m, 5m, 1h; got {text!r}")
    value = int(match[1]) * _UNITS[match[2]]
    if value <= 0:
        raise ValueError(f"a window must be longer than zero; got {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A window shape: ``name`` is the ``window`` tag written with its aggregates."""

    name: str
    length_us: int
    step_us: int

    @property
    def sliding(self) -> bool:
        """Whether windows overlap."""
        return self.step_us != self.length_us

    def starts_for(self, t_us: int) -> range:
        """Start times of every window that holds time ``t_us``."""
        last = t_us - t_us % self.step_us
        first = last - self.length_us + self.step_us
        return range(first, last + 1, self.step_us)


def parse_window(text: str) -> WindowSpec:
    """Parse ``"10s"`` (tumbling) or ``"5m/1m"`` (sliding: length/step)."""
    length_text, _, step_text = text.partition("/")
    length = _parse_duration(length_text)
    step = _parse_duration(step_text) if step_text else length
    if length % step != 0:
        raise ValueError(f"a sliding window's length must be a multiple of its step; got {text!r}")
    return WindowSpec(text.strip().replace(" ", ""), length, step)


class Accumulator:
    """Running count, mean, variance (Welford), min, max, first and last of a window."""

    __slots__ = ("count", "first_t", "first_v", "last_t", "last_v", "m2", "max", "mean", "min")

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.first_t = self.last_t = 0
        self.first_v = self.last_v = 0.0

    def add(self, t_us: int, value: float) -> None:
        """Fold one reading in (in any order of time)."""
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        if self.count == 1 or t_us < self.first_t:
            self.first_t, self.first_v = t_us, value
        if self.count == 1 or t_us >= self.last_t:
            self.last_t, self.last_v = t_us, value

    @property
    def stddev(self) -> float | None:
        """Sample standard deviation (as InfluxQL's STDDEV); None for one reading."""
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else None

    def state(self) -> tuple[int, float, float, float, float, int, float, int, float]:
        """Return a plain tuple for snapshots."""
        return (
            self.count,
            self.mean,
            self.m2,
            self.min,
            self.max,
            self.first_t,
            self.first_v,
            self.last_t,
            self.last_v,
        )

    @classmethod
    def from_state(
        cls, state: tuple[int, float, float, float, float, int, float, int, float]
    ) -> Accumulator:
        """Rebuild from :meth:`state`."""
        acc = cls()
        (
            acc.count,
            acc.mean,
            acc.m2,
            acc.min,
            acc.max,
            acc.first_t,
            acc.first_v,
            acc.last_t,
            acc.last_v,
        ) = state
        return acc


@dataclass(frozen=True, slots=True)
class Aggregate:
    """The aggregate of one series over one closed window."""

    site: str
    device: str
    sensor: str
    metric: str
    window: str
    start_us: int
    end_us: int
    count: int
    mean: float
    min: float
    max: float
    stddev: float | None
    first: float
    last: float

    @property
    def start(self) -> datetime:
        """The window's start (UTC)."""
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=self.start_us)


# Open windows of one series: {(spec index, window start): Accumulator}
_Open = dict[tuple[int, int], Accumulator]


class SeriesWindows:
    """Open windows of every series of one device, for a set of window specs."""

    __slots__ = ("_min_end", "_open", "specs")

    def __init__(self, specs: tuple[WindowSpec, ...]) -> None:
        self.specs = specs
        self._open: dict[tuple[str, str], _Open] = {}
        # Cached earliest end, so that the common "nothing to close" case is O(1).
        self._min_end: int | None = None

    def add(self, sensor: str, metric: str, t_us: int, value: float) -> None:
        """Fold a reading into every window that holds its time."""
        series = self._open.get((sensor, metric))
        if series is None:
            series = self._open[(sensor, metric)] = {}
        for i, spec in enumerate(self.specs):
            for start in spec.starts_for(t_us):
                acc = series.get((i, start))
                if acc is None:
                    acc = series[(i, start)] = Accumulator()
                    end = start + spec.length_us
                    if self._min_end is None or end < self._min_end:
                        self._min_end = end
                acc.add(t_us, value)

    def next_end_us(self) -> int | None:
        """Return the earliest end among open windows, or None when none is open."""
        return self._min_end

    def _recompute_min_end(self) -> None:
        ends = [start + self.specs[i].length_us for s in self._open.values() for (i, start) in s]
        self._min_end = min(ends) if ends else None

    def close_until(self, watermark_us: int, site: str, device: str) -> list[Aggregate]:
        """Close and return every window that ends at or before ``watermark_us``."""
        if self._min_end is None or watermark_us < self._min_end:
            return []
        out: list[Aggregate] = []
        for (sensor, metric), series in list(self._open.items()):
            done = [k for k in series if k[1] + self.specs[k[0]].length_us <= watermark_us]
            for key in sorted(done, key=lambda k: (k[1] + self.specs[k[0]].length_us, k[0])):
                i, start = key
                acc = series.pop(key)
                spec = self.specs[i]
                out.append(
                    Aggregate(
                        site,
                        device,
                        sensor,
                        metric,
                        spec.name,
                        start,
                        start + spec.length_us,
                        acc.count,
                        acc.mean,
                        acc.min,
                        acc.max,
                        acc.stddev,
                        acc.first_v,
                        acc.last_v,
                    )
                )
            if not series:
                del self._open[(sensor, metric)]
        self._recompute_min_end()
        return out

    def __bool__(self) -> bool:
        return bool(self._open)

    def snapshot(self) -> list[tuple[str, str, int, int, tuple]]:  # type: ignore[type-arg]
        """Open windows as plain tuples: (sensor, metric, spec index, start, accumulator)."""
        return [
            (sensor, metric, i, start, acc.state())
            for (sensor, metric), series in self._open.items()
            for (i, start), acc in series.items()
        ]

    def restore(self, rows: list[tuple[str, str, int, int, tuple]]) -> None:  # type: ignore[type-arg]
        """Load a :meth:`snapshot`."""
        for sensor, metric, i, start, state in rows:
            self._open.setdefault((sensor, metric), {})[(i, start)] = Accumulator.from_state(state)
        self._recompute_min_end()
