"""Threshold above or below a level, with a separate clear level (hysteresis)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contract.alarms import Severity
from dataflows.detectors.base import Signal

__all__ = ["ThresholdDetector"]


class ThresholdDetector:
    """Active once the value crosses a level; inactive only once it is back past ``clear``.

    ``levels`` are (level, severity) pairs: the first crossing raises, and the most
    severe level crossed sets the severity (escalation). With ``above``, a value
    greater than the lowest level is a crossing and the condition holds until the
    value is at or below ``clear``; ``below`` mirrors that. ``clear`` defaults to the
    lowest raising level (no hysteresis).
    """

    __slots__ = ("_active", "above", "clear", "levels")

    def __init__(
        self,
        *,
        levels: Sequence[tuple[float, Severity]],
        above: bool = True,
        clear: float | None = None,
    ) -> None:
        if not levels:
            raise ValueError("a threshold needs at least one level")
        # Least severe crossing first: for 'above' that is the lowest level.
        self.levels = sorted(levels, key=lambda ls: ls[0], reverse=not above)
        self.above = above
        first = self.levels[0][0]
        self.clear = first if clear is None else clear
        if (above and self.clear > first) or (not above and self.clear < first):
            side = "at or below" if above else "at or above"
            raise ValueError(f"clear level {self.clear} must be {side} the raise level {first}")
        self._active = False

    def _crossed(self, value: float, level: float) -> bool:
        return value > level if self.above else value < level

    def update(self, t_us: int, value: float) -> Signal:
        """Take one reading."""
        first = self.levels[0][0]
        if self._active:
            back = value <= self.clear if self.above else value >= self.clear
            self._active = not back
        else:
            self._active = self._crossed(value, first)
        if not self._active:
            return Signal(False, value, first)
        severity = None
        threshold = first
        for level, sev in self.levels:
            if self._crossed(value, level):
                severity, threshold = sev, level
        word = "above" if self.above else "below"
        return Signal(True, value, threshold, f"{value:g} {word} {threshold:g}", severity)

    def snapshot(self) -> dict[str, Any]:
        """Return the state as plain data."""
        return {"active": self._active}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot`."""
        self._active = bool(state["active"])
