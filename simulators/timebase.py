"""Time modes: how simulated event time maps onto the wall clock.

- real time (``speed=1``): a reading due at offset ``s`` is published ``s`` seconds
  after the start, with event time ``start + s``;
- accelerated (``speed=N``): published ``s / N`` seconds after the start, with event
  time ``start + s``, so an hour of data takes a minute at ``N=60``;
- as fast as possible (``speed=None``): no waiting at all; event time is synthetic
  (``start + s``), for backfills and benchmarks.

When no start is given, real time starts now; accelerated and unthrottled runs with a
known duration start ``duration`` before now, so that a backfill ends at about now
(the gateway refuses readings too far in the future).

:class:`Timebase` also measures lag: how late, on the wall clock, each item was
handled compared with its schedule.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = ["LagStats", "Timebase", "parse_speed", "resolve_start"]


def parse_speed(text: str) -> float | None:
    """Parse a time mode: ``realtime``, ``xN`` / ``N`` (accelerated) or ``max``/``fast``."""
    value = text.strip().lower()
    if value in ("realtime", "real", "1", "x1"):
        return 1.0
    if value in ("max", "fast", "unthrottled", "asap"):
        return None
    match = re.fullmatch(r"x?([0-9]*\.?[0-9]+)", value)
    if match is None or float(match[1]) <= 0:
        raise ValueError(
            f"expected a speed: realtime, xN (accelerated, N > 0) or max; got {text!r}"
        )
    return float(match[1])


def resolve_start(
    start: datetime | None, speed: float | None, duration_s: float | None
) -> datetime:
    """Return the event time of offset 0 (see the module docstring)."""
    if start is not None:
        if start.tzinfo is None:
            raise ValueError("the start time must be timezone-aware")
        return start.astimezone(UTC)
    now = datetime.now(UTC)
    if speed == 1.0 or duration_s is None:
        return now
    return now - timedelta(seconds=duration_s)


@dataclass
class LagStats:
    """Lag figures in wall-clock seconds: how late items were handled."""

    count: int = 0
    total: float = 0.0
    max: float = 0.0
    late: int = 0
    """Items handled more than the tolerance after their due time."""
    tolerance_s: float = 1.0
    # Histogram in 1 ms buckets up to 60 s, for percentiles without keeping samples.
    _buckets: dict[int, int] = field(default_factory=dict)

    def add(self, lag: float) -> None:
        """Record one lag (seconds, >= 0)."""
        self.count += 1
        self.total += lag
        if lag > self.max:
            self.max = lag
        if lag > self.tolerance_s:
            self.late += 1
        key = min(int(lag * 1000), 60_000)
        self._buckets[key] = self._buckets.get(key, 0) + 1

    @classmethod
    def merged(cls, parts: list[LagStats]) -> LagStats:
        """Return one set of figures over ``parts`` (same tolerance as the first)."""
        out = cls(tolerance_s=parts[0].tolerance_s if parts else 1.0)
        for part in parts:
            out.count += part.count
            out.total += part.total
            out.max = max(out.max, part.max)
            out.late += part.late
            for key, n in list(part._buckets.items()):
                out._buckets[key] = out._buckets.get(key, 0) + n
        return out

    @property
    def mean(self) -> float:
        """Mean lag in seconds."""
        return self.total / self.count if self.count else 0.0

    def percentile(self, q: float) -> float:
        """Return the ``q`` quantile (0..1) in seconds, to the millisecond."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for key in sorted(self._buckets):
            seen += self._buckets[key]
            if seen >= rank:
                return (key + 1) / 1000.0
        return self.max

    def as_dict(self) -> dict[str, float | int]:
        """Return the figures as a JSON-ready dict."""
        return {
            "count": self.count,
            "mean_s": round(self.mean, 6),
            "p50_s": self.percentile(0.5),
            "p99_s": self.percentile(0.99),
            "max_s": round(self.max, 6),
            "late": self.late,
            "tolerance_s": self.tolerance_s,
        }


class Timebase:
    """Paces a run: ``wait_for(offset)`` returns when ``offset`` is due."""

    def __init__(self, *, start: datetime, speed: float | None) -> None:
        if start.tzinfo is None:
            raise ValueError("the start time must be timezone-aware")
        if speed is not None and speed <= 0:
            raise ValueError(f"speed must be > 0 or None (unthrottled); got {speed}")
        self.start = start.astimezone(UTC)
        self.start_epoch = self.start.timestamp()
        self.speed = speed
        self._wall0: float | None = None

    @property
    def throttled(self) -> bool:
        """Whether the run waits for the wall clock."""
        return self.speed is not None

    def begin(self) -> None:
        """Start the wall clock of the run."""
        self._wall0 = time.monotonic()

    def elapsed(self) -> float:
        """Wall seconds since :meth:`begin`."""
        if self._wall0 is None:
            return 0.0
        return time.monotonic() - self._wall0

    def due_in(self, offset_s: float) -> float:
        """Wall seconds until ``offset_s`` (sim seconds) is due; negative when late."""
        if self.speed is None or self._wall0 is None:
            return 0.0
        return self._wall0 + offset_s / self.speed - time.monotonic()

    def wait_for(self, offset_s: float, stop: threading.Event) -> float:
        """Wait until ``offset_s`` is due (or ``stop`` is set); return the lag in seconds."""
        remaining = self.due_in(offset_s)
        if remaining > 0:
            stop.wait(remaining)
            return 0.0
        return -remaining

    def event_time(self, offset_s: float) -> datetime:
        """Return the event time of ``offset_s``."""
        return self.start + timedelta(seconds=offset_s)
