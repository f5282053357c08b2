"""Time for the edge agent: a :class:`Clock` protocol, the system clock and a fake.

The sampler schedules on the monotonic clock (immune to NTP steps) and stamps
readings with the wall clock in UTC. Both come from one injectable object so that a
test can simulate hours of sampling in milliseconds with :class:`FakeClock`.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    """Monotonic time for schedules, UTC wall time for stamps, and an interruptible wait."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def now(self) -> datetime:
        """Return the current time, timezone-aware UTC."""
        ...

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``event``; return whether it is set."""
        ...


class SystemClock:
    """The real clocks of the machine."""

    def monotonic(self) -> float:
        """Return :func:`time.monotonic`."""
        return time.monotonic()

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Block on ``event`` for at most ``timeout`` seconds."""
        return event.wait(max(0.0, timeout))


class FakeClock:
    """A clock that only moves when told to; :meth:`wait` advances it instead of blocking.

    The wall clock is ``start`` plus the monotonic seconds elapsed, so the two never
    disagree in a test.
    """

    def __init__(
        self,
        *,
        start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
        monotonic_start: float = 1000.0,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._wall0 = start.astimezone(UTC)
        self._mono0 = monotonic_start
        self._mono = monotonic_start
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        """Return the fake monotonic time."""
        with self._lock:
            return self._mono

    def now(self) -> datetime:
        """Return the fake UTC time."""
        with self._lock:
            return self._wall0 + timedelta(seconds=self._mono - self._mono0)

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._mono += seconds

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Return at once if ``event`` is set, else advance by ``timeout``."""
        if event.is_set():
            return True
        self.advance(max(0.0, timeout))
        return event.is_set()
