"""Rate of change: per second between readings, or the change over a time window."""

from __future__ import annotations

from collections import deque
from typing import Any

from dataflows.detectors.base import US, Signal

__all__ = ["RateDetector"]

_MAX_POINTS = 4096


class RateDetector:
    """Active while the rate of change exceeds ``max_rate`` in magnitude.

    Without ``window_us`` the rate is per second between consecutive readings. With
    it, the rate is the change over the window: the value now minus the oldest value
    within the last ``window_us`` (at most 4,096 points are kept). ``direction``
    is ``"both"``, ``"up"`` or ``"down"``.
    """

    __slots__ = ("_points", "direction", "max_rate", "window_us")

    def __init__(
        self, *, max_rate: float, window_us: int | None = None, direction: str = "both"
    ) -> None:
        if max_rate <= 0:
            raise ValueError(f"max_rate must be > 0; got {max_rate}")
        if direction not in ("both", "up", "down"):
            raise ValueError(f"direction must be both, up or down; got {direction!r}")
        self.max_rate = max_rate
        self.window_us = window_us
        self.direction = direction
        self._points: deque[tuple[int, float]] = deque(maxlen=_MAX_POINTS)

    def update(self, t_us: int, value: float) -> Signal | None:
        """Take one reading; None for the first one (no rate yet)."""
        points = self._points
        if self.window_us is None:
            prev = points[-1] if points else None
            points.clear()
            points.append((t_us, value))
            if prev is None or t_us <= prev[0]:
                return None
            rate = (value - prev[1]) * US / (t_us - prev[0])
            unit = "/s"
        else:
            points.append((t_us, value))
            while len(points) > 1 and points[0][0] < t_us - self.window_us:
                points.popleft()
            if len(points) < 2:
                return None
            rate = value - points[0][1]
            unit = f" per {self.window_us / US:g}s"
        if self.direction == "up":
            hit = rate > self.max_rate
        elif self.direction == "down":
            hit = -rate > self.max_rate
        else:
            hit = abs(rate) > self.max_rate
        message = f"rate {rate:+.4g}{unit} beyond {self.max_rate:g}" if hit else ""
        return Signal(hit, rate, self.max_rate, message)

    def snapshot(self) -> dict[str, Any]:
        """Return the state as plain data."""
        return {"points": [list(p) for p in self._points]}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot`."""
        self._points = deque(((int(t), float(v)) for t, v in state["points"]), maxlen=_MAX_POINTS)
