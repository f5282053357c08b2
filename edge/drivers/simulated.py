"""A small, seeded, self-contained signal for demos and tests without hardware.

``value = offset + amplitude * sin(2 pi n / period) + gauss(0, noise)`` where ``n``
counts reads, so two agents with the same seed produce the same values. Richer
signal models live in ``simulators/``; this one stays tiny on purpose.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from edge.drivers.base import DriverFault, DriverOptions, Measurement, parse_options

__all__ = ["SimulatedDriver", "SimulatedOptions", "create"]


class SimulatedOptions(DriverOptions):
    """Options of the ``simulated`` driver."""

    seed: int = 0
    metric: str = "value"
    unit: str = ""
    offset: float = 20.0
    amplitude: float = 5.0
    period: Annotated[int, Field(ge=1)] = 60
    """Reads per sine period."""
    noise: Annotated[float, Field(ge=0)] = 0.1
    fail_every: Annotated[int, Field(ge=0)] = 0
    """Every n-th read raises a fault (0: never), to exercise fault handling."""
    decimals: Annotated[int, Field(ge=0, le=12)] = 6


class SimulatedDriver:
    """Produces the seeded signal."""

    kind = "simulated"

    def __init__(self, options: SimulatedOptions) -> None:
        self.options = options
        self._rng = random.Random(options.seed)
        self._n = 0

    def read(self) -> list[Measurement]:
        """Return the next value of the signal."""
        opts = self.options
        self._n += 1
        noise = self._rng.gauss(0.0, opts.noise) if opts.noise else 0.0
        if opts.fail_every and self._n % opts.fail_every == 0:
            raise DriverFault(f"simulated fault on read {self._n}")
        value = opts.offset + opts.amplitude * math.sin(2 * math.pi * self._n / opts.period)
        return [Measurement(opts.metric, round(value + noise, opts.decimals), opts.unit)]

    def close(self) -> None:
        """Nothing to release."""


def create(options: Mapping[str, Any]) -> SimulatedDriver:
    """Build a simulated driver from its options."""
    return SimulatedDriver(parse_options(SimulatedOptions, options))
