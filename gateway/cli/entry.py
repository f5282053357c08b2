"""The ``sensorgate`` command line.

Every command has ``--help``. Imports of heavy parts (Bytewax, InfluxDB) happen
inside the commands, so that ``sensorgate edge ...`` works on a device that only
installed the ``edge`` extra.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.cli import bench, run, stack

__all__ = ["build_parser", "main", "run_command"]

# Commands owned by other packages. Each module provides
# register(subparsers); a package that is not installed simply has no command.
_PLUGINS = (
    "edge.cli",
    "simulators.cli",
    "gateway.cli.detection",
    "gateway.ops.acknowledge",
    "gateway.ops.replay",
    "gateway.bench.alarms",
    "gateway.bench.fleet_cli",
    "gateway.bench.adapters_cli",
    "gateway.cli.views",
    "gateway.cli.dashboard",
    "gateway.cli.config",
    "gateway.influx.cli",
    "gateway.runtime.cluster",
    "gateway.bench.scaling_cli",
    "gateway.fuzz.cli",
    "gateway.chaos.cli",
)


# Third-party modules of the extras: an edge-only install lacks them, and a command
# that needs one says which extra to install instead of printing a traceback.
_EXTRA_OF = {
    "bytewax": "gateway",
    "influxdb_client": "gateway",
    "httpx": "gateway",
    "rich": "gateway",
    "tenacity": "gateway",
    "aiohttp": "gateway",
    "aiomqtt": "gateway",
    "prometheus_client": "gateway",
    "psutil": "gateway",
    "pydantic_settings": "gateway",
    "matplotlib": "bench",
}


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="sensorgate",
        description="SensorGate: IoT sensor streaming gateway (MQTT -> Bytewax -> InfluxDB).",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    parser.add_argument(
        "--config",
        dest="config_file",
        type=Path,
        default=None,
        metavar="FILE",
        help="gateway config file (TOML; SENSORGATE_* variables override it); default"
        " SENSORGATE_CONFIG_FILE",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # The gateway's own command groups first, in the order --help lists them.
    stack.register(sub)
    run.register(sub)
    bench.register(sub)

    for module_name in _PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:  # the module exists but is broken: say so
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    from gateway.observability.logs import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, json_logs=args.log_json)
    config = getattr(args, "run_config_file", None) or args.config_file
    if config is not None:
        # Every command (and every process it starts) reads its settings through
        # load_settings, which honours this variable.
        from gateway.settings import CONFIG_ENV

        os.environ[CONFIG_ENV] = str(config)
    return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command; map errors to exit codes with :func:`contract.errors.exit_code_for`.

    Shared by the plugins' own ``main`` so every entry point reports errors alike.
    """
    from contract.errors import ExitCode, SensorGateError, exit_code_for

    try:
        return int(args.func(args) or 0)
    except SensorGateError as exc:
        print(f"sensorgate: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt as exc:
        return exit_code_for(exc)
    except ModuleNotFoundError as exc:
        extra = _EXTRA_OF.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"sensorgate: the {args.command!r} command needs {exc.name}, which comes with the"
            f" {extra!r} extra: pip install 'sensorgate[{extra}]'",
            file=sys.stderr,
        )
        return ExitCode.REFUSED


if __name__ == "__main__":
    sys.exit(main())
