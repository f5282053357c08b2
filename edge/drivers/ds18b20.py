"""DS18B20 1-Wire thermometers through the kernel's ``w1_therm`` driver.

Each probe appears as ``/sys/bus/w1/devices/28-<serial>/w1_slave`` with two lines::

    72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
    72 01 4b 46 7f ff 0e 10 57 t=23125

A ``NO`` in the first line means the scratchpad failed its CRC (a noisy bus); the
value is then garbage and becomes a fault. ``t=85000`` is the power-on reset value of
the scratchpad, read when a probe browned out or was never converted: also a fault,
even though 85 °C is physically possible (a real 85.000 exactly is vanishingly rare).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge.drivers.base import DriverFault, DriverOptions, Measurement, parse_options

__all__ = ["DS18B20Driver", "DS18B20Options", "create", "parse_w1_slave"]

POWER_ON_RESET_MILLI_C = 85_000
_CRC_RE = re.compile(r"crc=([0-9a-fA-F]{2})\s+(YES|NO)")
_T_RE = re.compile(r"t=(-?\d+)")


class DS18B20Options(DriverOptions):
    """Options of the ``ds18b20`` driver."""

    root: Path = Path("/sys/bus/w1/devices")
    serials: tuple[str, ...] = ()
    """Probe directories (``28-0316a2795bff``); every ``28-*`` probe when empty."""
    min_probes: int = 1
    """Fewer probes found than this is a fault (a probe fell off the bus)."""


def parse_w1_slave(text: str) -> float:
    """Return the temperature in °C from a ``w1_slave`` file, or raise :class:`DriverFault`."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise DriverFault(f"w1_slave has {len(lines)} line(s); expected 2")
    crc = _CRC_RE.search(lines[0])
    if crc is None:
        raise DriverFault(f"w1_slave first line has no crc verdict: {lines[0]!r}")
    if crc.group(2) != "YES":
        raise DriverFault(f"CRC check failed (crc={crc.group(1)} NO)")
    temp = _T_RE.search(lines[1])
    if temp is None:
        raise DriverFault(f"w1_slave second line has no t=: {lines[1]!r}")
    milli = int(temp.group(1))
    if milli == POWER_ON_RESET_MILLI_C:
        raise DriverFault("85.000 degC power-on reset value (probe reset or not converted)")
    return milli / 1000.0


class DS18B20Driver:
    """Reads DS18B20 probes, one channel per probe serial."""

    kind = "ds18b20"

    def __init__(self, options: DS18B20Options) -> None:
        self.options = options

    def _probes(self) -> list[Path]:
        if self.options.serials:
            return [self.options.root / s for s in self.options.serials]
        return sorted(self.options.root.glob("28-*"))

    def read(self) -> list[Measurement]:
        """Read every probe; a failing probe is a fault measurement, not an exception."""
        probes = self._probes()
        if len(probes) < self.options.min_probes:
            raise DriverFault(
                f"found {len(probes)} DS18B20 probe(s) under {self.options.root};"
                f" expected at least {self.options.min_probes}"
            )
        out = []
        for probe in probes:
            try:
                value = parse_w1_slave((probe / "w1_slave").read_text())
            except OSError as exc:
                out.append(
                    Measurement("temperature", None, "degC", f"unreadable: {exc}", probe.name)
                )
            except DriverFault as exc:
                out.append(Measurement("temperature", None, "degC", str(exc), probe.name))
            else:
                out.append(Measurement("temperature", value, "degC", channel=probe.name))
        return out

    def close(self) -> None:
        """Nothing to release."""


def create(options: Mapping[str, Any]) -> DS18B20Driver:
    """Build a DS18B20 driver from its options."""
    return DS18B20Driver(parse_options(DS18B20Options, options))
