"""Capped exponential backoff with jitter, for reconnecting fleets."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Capped exponential backoff with jitter.

    Attempt ``n`` (from 0) waits a uniform draw from ``[d * (1 - jitter), d]`` where
    ``d = min(cap, base * 2**n)``: never above the cap, never below half of it with
    the default jitter, and different for every device.
    """

    def __init__(
        self, base: float, cap: float, jitter: float = 0.5, *, rng: random.Random | None = None
    ) -> None:
        if base <= 0 or cap < base or not 0 <= jitter <= 1:
            raise ValueError("need 0 < base <= cap and 0 <= jitter <= 1")
        self.base, self.cap, self.jitter = base, cap, jitter
        self._rng = rng or random.Random()
        self.attempt = 0

    def next(self) -> float:
        """Return the delay before the next attempt and count the attempt."""
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 62)))
        self.attempt += 1
        return self._rng.uniform(ceiling * (1 - self.jitter), ceiling)

    def reset(self) -> None:
        """Start again from ``base`` (after a successful connection)."""
        self.attempt = 0
