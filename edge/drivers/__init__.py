"""Sensor drivers behind one small interface, found through a registry.

See :mod:`edge.drivers.base` for the interface and :mod:`edge.drivers.registry` for
how built-in and third-party drivers (entry point group ``sensorgate.drivers``) are
found.
"""

from edge.drivers.base import Driver, DriverFault, Measurement
from edge.drivers.registry import DriverRegistry, default_registry

__all__ = ["Driver", "DriverFault", "DriverRegistry", "Measurement", "default_registry"]
