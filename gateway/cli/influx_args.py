"""``--influx-url`` and ``--database``: the InfluxDB options of the commands that read it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.settings import GatewaySettings

__all__ = ["influx_args", "settings_of"]


def influx_args(p: argparse.ArgumentParser) -> None:
    """Add ``--influx-url`` and ``--database`` (default: the ``SENSORGATE_INFLUX__*`` settings)."""
    p.add_argument("--influx-url", default=None, help="InfluxDB URL (SENSORGATE_INFLUX__URL)")
    p.add_argument("--database", default=None, help="database (SENSORGATE_INFLUX__DATABASE)")


def settings_of(args: argparse.Namespace) -> GatewaySettings:
    """Return the gateway settings with ``--influx-url`` and ``--database`` laid over them."""
    from gateway.settings import load_settings

    base = load_settings()
    influx = base.influx.model_dump()
    if args.influx_url:
        influx["url"] = args.influx_url
    if args.database:
        influx["database"] = args.database
    return load_settings(influx=influx)
