"""Linux SoC/CPU temperature from ``/sys/class/thermal/thermal_zone*/temp``.

The kernel reports millidegrees Celsius. With ``zone`` set, one zone is read as the
metric ``temperature``; otherwise every zone is read, each as its own channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge.drivers.base import DriverFault, DriverOptions, Measurement, parse_options

__all__ = ["ThermalDriver", "ThermalOptions", "create"]


class ThermalOptions(DriverOptions):
    """Options of the ``thermal`` driver."""

    root: Path = Path("/sys/class/thermal")
    zone: str | None = None
    """A zone directory name such as ``thermal_zone0``; all zones when unset."""


class ThermalDriver:
    """Reads thermal zones."""

    kind = "thermal"

    def __init__(self, options: ThermalOptions) -> None:
        self.options = options

    def _zones(self) -> list[Path]:
        if self.options.zone is not None:
            return [self.options.root / self.options.zone]
        zones = sorted(self.options.root.glob("thermal_zone*"), key=lambda p: _zone_key(p.name))
        if not zones:
            raise DriverFault(f"no thermal zones under {self.options.root}")
        return zones

    def read(self) -> list[Measurement]:
        """Read every configured zone in degrees Celsius."""
        single = self.options.zone is not None
        out = []
        for zone in self._zones():
            channel = None if single else zone.name
            try:
                raw = (zone / "temp").read_text().strip()
                value = int(raw) / 1000.0
            except (OSError, ValueError) as exc:
                if single:
                    raise DriverFault(f"cannot read {zone / 'temp'}: {exc}") from exc
                out.append(Measurement("temperature", None, "degC", f"unreadable: {exc}", channel))
                continue
            out.append(Measurement("temperature", value, "degC", channel=channel))
        return out

    def close(self) -> None:
        """Nothing to release."""


def _zone_key(name: str) -> tuple[int, str]:
    digits = name.removeprefix("thermal_zone")
    return (int(digits), name) if digits.isdigit() else (1 << 30, name)


def create(options: Mapping[str, Any]) -> ThermalDriver:
    """Build a thermal driver from its options."""
    return ThermalDriver(parse_options(ThermalOptions, options))
