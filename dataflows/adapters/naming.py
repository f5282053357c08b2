"""Metric names and units: one vocabulary for every family, °F converted to °C.

Foreign field names become SensorGate metrics: first the adapter's own
``[adapter.metrics]`` table, then the known aliases below (``Temperature``,
``illuminance_lux``, ``apower``, ``Total``...), then a generic rule: CamelCase to
snake_case, spaces and dashes to ``_``, lower case. A unit is kept as the family states
it, except Fahrenheit, which is converted (``°F``, ``F``, ``degF`` -> ``°C``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "FAHRENHEIT",
    "MetricNamer",
    "fahrenheit_to_celsius",
    "is_temperature",
    "normalise_metric",
]

FAHRENHEIT = frozenset({"°F", "ºF", "F", "degF", "fahrenheit", "Fahrenheit"})

_ALIASES = {
    "temp": "temperature",
    "tc": "temperature",
    "dewpoint": "dew_point",
    "heatindex": "heat_index",
    "hum": "humidity",
    "rh": "humidity",
    "press": "pressure",
    "seapressure": "sea_pressure",
    "illuminance_lux": "illuminance",
    "lux": "illuminance",
    "illuminance": "illuminance",
    "apower": "power",
    "act_power": "power",
    "aenergy": "energy",
    "total": "energy",
    "factor": "power_factor",
    "pf": "power_factor",
    "apparentpower": "apparent_power",
    "reactivepower": "reactive_power",
    "today": "energy_today",
    "yesterday": "energy_yesterday",
    "freq": "frequency",
    "linkquality": "linkquality",
    "lqi": "linkquality",
    "batt": "battery",
    "battery_percent": "battery",
    "uptimesec": "uptime",
    "co2": "co2",
    "pm2_5": "pm25",
    "pm25": "pm25",
}

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEP = re.compile(r"[\s\-./]+")


def normalise_metric(name: str) -> str:
    """Return SensorGate's metric name for a foreign field name (see module docstring)."""
    key = name.strip()
    low = key.lower()
    alias = _ALIASES.get(low)
    if alias is not None:
        return alias
    snake = _SEP.sub("_", _CAMEL.sub("_", key)).lower().strip("_")
    return _ALIASES.get(snake, snake) or low or name


def is_temperature(metric: str) -> bool:
    """Whether ``metric`` (normalised) holds a temperature, so °F applies to it."""
    return "temperature" in metric or metric in ("dew_point", "heat_index")


def fahrenheit_to_celsius(value: float) -> float:
    """Convert °F to °C."""
    return (value - 32.0) * 5.0 / 9.0


class MetricNamer:
    """An adapter's metric names: its own table first, then the shared rules; cached."""

    __slots__ = ("_cache", "_renames")

    def __init__(self, renames: Mapping[str, str] | None = None) -> None:
        self._renames = dict(renames or {})
        self._cache: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        """Return the metric for ``name``."""
        got = self._cache.get(name)
        if got is None:
            got = self._renames.get(name) or normalise_metric(name)
            if len(self._cache) < 50_000:
                self._cache[name] = got
        return got
