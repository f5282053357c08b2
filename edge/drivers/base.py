"""The interface every sensor driver implements.

A driver is created from its validated options by a factory, then :meth:`Driver.read`
is called once per sampling tick. It returns :class:`Measurement` objects (metric,
value, unit) and never stamps time or names the configured sensor: the sampler does
both, so all drivers stamp the same way. A driver that cannot read raises
:class:`DriverFault`; a driver that can read some channels but not others returns
measurements with ``fault`` set for the failed ones. Either way the agent turns the
failure into a fault reading and carries on.

A third-party driver is a callable ``factory(options: Mapping[str, object]) -> Driver``
registered under the entry point group ``sensorgate.drivers``. Raise
:class:`~contract.errors.ConfigError` from the factory for bad options (use
:func:`parse_options` to get that for free from a pydantic model).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from contract.errors import ConfigError, SensorGateError

__all__ = [
    "Driver",
    "DriverFactory",
    "DriverFault",
    "DriverOptions",
    "Measurement",
    "parse_options",
]


class DriverFault(SensorGateError):
    """A sensor could not be read; the message says why (it becomes ``Reading.fault``)."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One value (or one failure) from a driver, before it is stamped.

    ``channel`` distinguishes several physical sensors behind one configured sensor
    (one DS18B20 probe among several, one thermal zone); the sampler appends it to
    the sensor id.
    """

    metric: str
    value: float | None
    unit: str = ""
    fault: str | None = None
    channel: str | None = None


@runtime_checkable
class Driver(Protocol):
    """What the sampler needs from a driver."""

    kind: str
    """The registry name of the driver (``thermal``, ``bme280``, ...)."""

    def read(self) -> list[Measurement]:
        """Read the sensor once; raise :class:`DriverFault` if it cannot be read."""
        ...

    def close(self) -> None:
        """Release the hardware (file handles, I2C bus)."""
        ...


DriverFactory = Callable[[Mapping[str, Any]], Driver]
"""Builds a driver from its options (a TOML table); raises ConfigError for bad ones."""


class DriverOptions(BaseModel):
    """Base of the per-driver option models: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


OptionsT = TypeVar("OptionsT", bound=DriverOptions)


def parse_options(
    model: type[OptionsT], options: Mapping[str, Any], *, field: str = "options"
) -> OptionsT:
    """Validate ``options`` with ``model``; raise :class:`ConfigError` naming the field."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"])
        got = "" if err["type"] == "missing" else f" (got {err.get('input')!r})"
        raise ConfigError(f"{field}.{loc}" if loc else field, f"{err['msg']}{got}") from None
