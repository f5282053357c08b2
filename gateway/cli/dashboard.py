"""Dashboard commands of ``sensorgate``: ``dashboard``, ``bench-dashboard``, ``--dashboard-*``.

``gateway run --dashboard-port`` has the gateway process serve the dashboard too.

The dashboard reads InfluxDB and listens to the broker (:mod:`gateway.dashboard`). Its
access token is never taken on the command line (:class:`_RefuseToken`): ``ps`` and
``/proc`` would show it to every user of the machine.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.errors import ExitCode
from gateway.cli.influx_args import influx_args, settings_of
from gateway.dashboard.access import TOKEN_SOURCES
from gateway.dashboard.settings import TOKEN_ENV

if TYPE_CHECKING:
    from gateway.dashboard.settings import DashboardSettings
    from gateway.settings import GatewaySettings

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dashboard`` and ``bench-dashboard``, and the dashboard options of ``gateway run``."""
    _add_dashboard(subparsers)
    _add_bench_dashboard(subparsers)
    _extend_gateway_run(subparsers)


def _add_dashboard(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dash = subparsers.add_parser(
        "dashboard",
        help="serve the web dashboard against an InfluxDB and a broker",
        description="Serve the web dashboard (fleet, alarms, device charts, live updates)."
        " Settings from SENSORGATE_* variables ([dashboard]: SENSORGATE_DASHBOARD__*). Every"
        f" API route needs the access token unless --public-read: {TOKEN_SOURCES}, else a"
        " random one shown once in the printed URL. The acknowledge button publishes a"
        " command over MQTT (none with --read-only).",
        allow_abbrev=False,  # an abbreviated --token=... would be echoed in the error
    )
    influx_args(dash)
    dash.add_argument("--host", default=None, help="listen address (127.0.0.1)")
    dash.add_argument("--port", type=int, default=None, help="listen port (8080; 0 = any)")
    dash.add_argument("--read-only", action="store_true", help="no acknowledge button")
    dash.add_argument(
        "--public-read", action="store_true", help="the read API answers without the token"
    )
    dash.add_argument("--token-file", type=Path, default=None, help="file holding the access token")
    dash.add_argument(
        "--allowed-host",
        action="append",
        default=None,
        metavar="NAME",
        help="Host header name to answer (repeat; default: the listen address, localhost,"
        " 127.0.0.1, ::1)",
    )
    dash.add_argument("--token", action=_RefuseToken, help=argparse.SUPPRESS)
    dash.add_argument("--duration", type=float, default=None, help=argparse.SUPPRESS)
    dash.set_defaults(func=_cmd_dashboard)


def _add_bench_dashboard(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = subparsers.add_parser(
        "bench-dashboard",
        help="N live browsers (SSE) on one dashboard: alarm fan-out latency, RSS, CPU",
        description="Start mosquitto and influxd, run `sensorgate dashboard` as its own"
        " process, hold --clients event streams open, publish --alarms alarm events on MQTT"
        " and time each one to every stream (p50/p99/max), with the server's RSS and CPU."
        " Prints a table (or --json) and writes JSON. See docs/dashboard.md.",
    )
    bench.add_argument("--clients", type=int, default=200, help="event streams (200)")
    bench.add_argument("--alarms", type=int, default=200, help="alarm events timed (200)")
    bench.add_argument(
        "--interval", type=float, default=0.05, help="seconds between alarm events (0.05)"
    )
    bench.add_argument("--rounds", type=int, default=1, help="repeat the run (fresh services)")
    bench.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.set_defaults(func=_cmd_bench_dashboard)


class _RefuseToken(argparse.Action):
    """Refuses a token on the command line, without repeating it."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs="?", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kw: Any) -> None:
        option = self.option_strings[0]
        parser.exit(
            ExitCode.REFUSED,
            f"sensorgate: {option} is not accepted: a token on the command line is visible to"
            f" every user of this machine (ps, /proc). Give it as {TOKEN_SOURCES}.\n",
        )


def _gateway_run(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser | None:
    """Return the parser of ``gateway run``, if that command is registered."""
    gateway = subparsers.choices.get("gateway")
    if gateway is None:
        return None
    return next(
        (
            a.choices["run"]
            for a in gateway._actions
            if isinstance(a, argparse._SubParsersAction) and "run" in a.choices
        ),
        None,
    )


def _extend_gateway_run(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Give ``sensorgate gateway run`` a ``--dashboard-port``: the gateway process serves it."""
    run = _gateway_run(subparsers)
    if run is None or run.get_default("func") is None:
        return
    run.add_argument(
        "--dashboard-port",
        type=int,
        default=None,
        help="also serve the web dashboard on this port (process 0 of a cluster only)",
    )
    run.add_argument("--dashboard-host", default=None, help="dashboard listen address")
    run.add_argument("--dashboard-read-only", action="store_true", help="no acknowledge action")
    run.add_argument(
        "--dashboard-public-read",
        action="store_true",
        help="the dashboard's read API answers without the token",
    )
    run.add_argument(
        "--dashboard-token-file",
        type=Path,
        default=None,
        help=f"file holding the dashboard's access token (or {TOKEN_ENV})",
    )
    run.add_argument("--dashboard-token", action=_RefuseToken, help=argparse.SUPPRESS)
    run.allow_abbrev = False  # an abbreviated --dashboard-token=... would be echoed
    run.set_defaults(func=_with_dashboard(run.get_default("func")))


def _with_dashboard(
    run_gateway: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        if args.dashboard_port is None or (getattr(args, "process_id", None) or 0) != 0:
            return run_gateway(args)
        from gateway.dashboard.server import Dashboard
        from gateway.settings import load_settings

        settings = load_settings()
        options = _dashboard_options(
            settings,
            host=args.dashboard_host,
            port=args.dashboard_port,
            read_only=args.dashboard_read_only,
            public_read=args.dashboard_public_read,
            token_file=args.dashboard_token_file,
        )
        # Its own event-loop thread; it logs its URL (without the token).
        dash = Dashboard(settings, options=options).start()
        try:
            return run_gateway(args)
        finally:
            dash.stop()

    return run


def _dashboard_options(settings: GatewaySettings, **given: Any) -> DashboardSettings:
    """Return the dashboard settings with the command-line options laid over them."""
    from gateway.dashboard.settings import DashboardSettings

    # Not `v not in (None, False)`: 0 == False, and --port 0 (any free port) is a value.
    updates = {k: v for k, v in given.items() if v is not None and v is not False}
    if "token_file" in updates:
        updates["token"] = None  # the file given here wins over the environment
    return DashboardSettings.model_validate({**dict(settings.dashboard), **updates})


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from gateway.dashboard.server import run_dashboard

    settings = settings_of(args)
    options = _dashboard_options(
        settings,
        host=args.host,
        port=args.port,
        read_only=args.read_only,
        public_read=args.public_read,
        token_file=args.token_file,
        allowed_hosts=tuple(args.allowed_host) if args.allowed_host else None,
    )
    return run_dashboard(settings, options=options, duration_s=args.duration)


def _cmd_bench_dashboard(args: argparse.Namespace) -> int:
    from gateway.bench.dashboard_fanout import main_from_args

    return main_from_args(args)
