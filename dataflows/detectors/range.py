"""Out of range: physically impossible values (a sensor fault, not a process alarm)."""

from __future__ import annotations

from typing import Any

from dataflows.detectors.base import Signal

__all__ = ["RangeDetector"]


class RangeDetector:
    """Active while the value is outside ``[low, high]`` (either bound may be None)."""

    __slots__ = ("high", "low")

    def __init__(self, *, low: float | None = None, high: float | None = None) -> None:
        if low is None and high is None:
            raise ValueError("a range needs a low or a high bound")
        if low is not None and high is not None and low > high:
            raise ValueError(f"low {low} is above high {high}")
        self.low = low
        self.high = high

    def update(self, t_us: int, value: float) -> Signal:
        """Take one reading."""
        if self.low is not None and value < self.low:
            return Signal(True, value, self.low, f"{value:g} below the valid range {self.low:g}")
        if self.high is not None and value > self.high:
            return Signal(True, value, self.high, f"{value:g} above the valid range {self.high:g}")
        return Signal(False, value, self.high if self.high is not None else self.low)

    def snapshot(self) -> dict[str, Any]:
        """Stateless: nothing to keep."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Stateless: nothing to load."""
