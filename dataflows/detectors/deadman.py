"""Deadman: a device or a series that has gone silent for too long."""

from __future__ import annotations

from typing import Any

from dataflows.detectors.base import US, Signal

__all__ = ["DeadmanDetector"]


class DeadmanDetector:
    """Active when nothing was seen for ``silence_us``; checked by :meth:`check` on a timer.

    Times are in one time base: ``seen`` takes the time of a reading, ``check`` takes
    now. The gateway passes event times and a wall clock that tracks them; offline
    detection passes the time of the next reading (a gap in the file is silence).
    """

    __slots__ = ("last_us", "silence_us")

    def __init__(self, *, silence_us: int, last_us: int | None = None) -> None:
        if silence_us <= 0:
            raise ValueError(f"silence must be > 0; got {silence_us} us")
        self.silence_us = silence_us
        self.last_us = last_us

    def seen(self, t_us: int) -> Signal:
        """Something arrived at ``t_us``: the device is alive."""
        if self.last_us is None or t_us > self.last_us:
            self.last_us = t_us
        return Signal(False, None, self.silence_us / US)

    def due_us(self) -> int | None:
        """When silence starts to count as dead (None before anything was seen)."""
        return None if self.last_us is None else self.last_us + self.silence_us

    def check(self, now_us: int) -> Signal | None:
        """Return an active signal if silent for ``silence_us`` at ``now_us``."""
        if self.last_us is None:
            return None
        quiet = now_us - self.last_us
        if quiet >= self.silence_us:
            return Signal(True, quiet / US, self.silence_us / US, f"silent for {quiet / US:g}s")
        return None

    def update(self, t_us: int, value: float) -> Signal:
        """Take a reading: the device is alive (the Detector protocol)."""
        return self.seen(t_us)

    def snapshot(self) -> dict[str, Any]:
        """Return the state as plain data."""
        return {"last": self.last_us}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot`."""
        self.last_us = state["last"]
