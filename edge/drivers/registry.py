"""Find driver factories by name: built-ins first, then the ``sensorgate.drivers`` group.

Third parties extend the agent without touching it by declaring, in their package::

    [project.entry-points."sensorgate.drivers"]
    mysensor = "mypackage.sensor:create"

where ``create(options) -> Driver``. An entry point that fails to load is reported
as a :class:`~contract.errors.ConfigError` when (and only when) a sensor uses it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, cast

from contract.errors import ConfigError
from edge.drivers.base import Driver, DriverFactory

if TYPE_CHECKING:
    from edge.config import AgentConfig

__all__ = [
    "BUILTIN_DRIVERS",
    "ENTRY_POINT_GROUP",
    "DriverRegistry",
    "build_drivers",
    "default_registry",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "sensorgate.drivers"

# Import paths, not imports: a Pi without smbus2 must still run the thermal driver.
BUILTIN_DRIVERS: dict[str, str] = {
    "thermal": "edge.drivers.thermal:create",
    "ds18b20": "edge.drivers.ds18b20:create",
    "bme280": "edge.drivers.bme280:create",
    "system": "edge.drivers.system:create",
    "command": "edge.drivers.command:create",
    "simulated": "edge.drivers.simulated:create",
}


def _load_path(path: str) -> DriverFactory:
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    return cast(DriverFactory, getattr(module, attr))


class DriverRegistry:
    """Names to driver factories.

    ``extra`` factories (tests, embedding applications) win over entry points, which
    win over the built-ins, so a third party can replace a built-in driver.
    """

    def __init__(
        self,
        extra: Mapping[str, DriverFactory] | None = None,
        *,
        use_entry_points: bool = True,
    ) -> None:
        self._extra = dict(extra or {})
        self._use_entry_points = use_entry_points

    def _entry_points(self) -> dict[str, Any]:
        if not self._use_entry_points:
            return {}
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}

    def names(self) -> list[str]:
        """All driver names known, sorted."""
        return sorted({*BUILTIN_DRIVERS, *self._entry_points(), *self._extra})

    def factory(self, name: str, *, field: str = "driver") -> DriverFactory:
        """Return the factory called ``name``; raise :class:`ConfigError` if there is none."""
        if name in self._extra:
            return self._extra[name]
        eps = self._entry_points()
        try:
            if name in eps:
                return cast(DriverFactory, eps[name].load())
            if name in BUILTIN_DRIVERS:
                return _load_path(BUILTIN_DRIVERS[name])
        except Exception as exc:  # a broken plug-in must name itself, not crash the agent
            raise ConfigError(field, f"driver {name!r} could not be loaded: {exc}") from exc
        raise ConfigError(
            field, f"unknown driver {name!r}; known drivers: {', '.join(self.names())}"
        )

    def create(self, name: str, options: Mapping[str, Any], *, field: str = "driver") -> Driver:
        """Build the driver ``name`` from ``options``."""
        factory = self.factory(name, field=field)
        driver = factory(options)
        if not isinstance(driver, Driver):
            raise ConfigError(field, f"driver {name!r} factory returned {type(driver).__name__}")
        return driver


def default_registry() -> DriverRegistry:
    """Return the registry the agent uses: built-ins plus installed entry points."""
    return DriverRegistry()


def build_drivers(config: AgentConfig, registry: DriverRegistry | None = None) -> dict[str, Driver]:
    """Create the driver of every sensor; raise :class:`ConfigError` naming the sensor."""
    registry = registry or default_registry()
    drivers: dict[str, Driver] = {}
    for index, sensor in enumerate(config.sensors):
        field = f"sensors[{index}]"
        try:
            drivers[sensor.id] = registry.create(
                sensor.driver, sensor.options, field=f"{field}.driver"
            )
        except ConfigError as exc:
            for driver in drivers.values():
                driver.close()
            reason_field = exc.field if exc.field.startswith(field) else f"{field}.{exc.field}"
            raise ConfigError(reason_field, exc.reason) from None
    return drivers
