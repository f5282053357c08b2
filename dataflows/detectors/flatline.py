"""Flatline: a stuck sensor, whose value has not varied for a duration."""

from __future__ import annotations

from typing import Any

from dataflows.detectors.base import US, Signal

__all__ = ["FlatlineDetector"]


class FlatlineDetector:
    """Active once every reading of the last ``duration_us`` lies within ``tolerance``.

    O(1) state: the start of the current flat run and its min and max. A reading that
    widens the run beyond ``tolerance`` starts a new run at that reading.
    """

    __slots__ = ("_hi", "_lo", "_start", "duration_us", "tolerance")

    def __init__(self, *, duration_us: int, tolerance: float = 0.0) -> None:
        if duration_us <= 0:
            raise ValueError(f"duration must be > 0; got {duration_us} us")
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0; got {tolerance}")
        self.duration_us = duration_us
        self.tolerance = tolerance
        self._start: int | None = None
        self._lo = self._hi = 0.0

    def update(self, t_us: int, value: float) -> Signal:
        """Take one reading."""
        if self._start is None:
            self._start, self._lo, self._hi = t_us, value, value
        else:
            lo, hi = min(self._lo, value), max(self._hi, value)
            if hi - lo > self.tolerance:
                self._start, self._lo, self._hi = t_us, value, value
            else:
                self._lo, self._hi = lo, hi
        flat_for = t_us - self._start
        if flat_for >= self.duration_us:
            return Signal(
                True,
                value,
                self.tolerance,
                f"no variation beyond {self.tolerance:g} for {flat_for / US:g}s",
            )
        return Signal(False, value, self.tolerance)

    def snapshot(self) -> dict[str, Any]:
        """Return the state as plain data."""
        return {"start": self._start, "lo": self._lo, "hi": self._hi}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot`."""
        self._start, self._lo, self._hi = state["start"], state["lo"], state["hi"]
