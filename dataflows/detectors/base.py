"""The detector seam: :class:`Signal` and the :class:`Detector` protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from contract.alarms import Severity

__all__ = ["US", "Detector", "Signal"]

US = 1_000_000
"""Microseconds per second: detector times are integer microseconds since the epoch."""


@dataclass(frozen=True, slots=True)
class Signal:
    """What a detector says about the latest reading.

    ``severity`` overrides the rule's severity (escalation); None keeps the rule's.
    """

    active: bool
    value: float | None = None
    threshold: float | None = None
    message: str = ""
    severity: Severity | None = None


class Detector(Protocol):
    """A detector of one series: feed it readings in event-time order."""

    def update(self, t_us: int, value: float) -> Signal | None:
        """Take one reading; return the signal, or None while warming up."""

    def snapshot(self) -> dict[str, Any]:
        """Return the state as plain data."""

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot`."""
