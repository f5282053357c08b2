"""Viewing commands of ``sensorgate``: ``alerts``, ``devices``, ``query``, ``dashboard``.

They read InfluxDB through :class:`~gateway.views.Views` (settings from the usual
``SENSORGATE_*`` variables, or ``--influx-url``/``--database``), except ``alerts
--watch``, which follows the broker (:mod:`gateway.views.alerts_watch`), and ``dashboard``,
which serves both (:mod:`gateway.dashboard`).

Exit codes, for scripts (the table is :class:`contract.errors.ExitCode`):

- 0: done (and, with ``--fail-on``, no active alarm at or above that severity)
- 1: ``--fail-on SEVERITY`` was given and an active alarm at or above it exists
- 2: bad input (a filter, a time, an option)
- 3: InfluxDB could not be reached or refused the query
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contract.errors import ExitCode
from gateway.dashboard.access import TOKEN_SOURCES
from gateway.dashboard.settings import TOKEN_ENV

__all__ = ["register"]

_SEVERITIES = ("critical", "major", "minor", "warning", "info")
_STATES = ("active", "acknowledged", "cleared")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``alerts``, ``devices``, ``query`` and ``dashboard`` to a ``sensorgate`` parser."""
    epilog = (
        "Times: now, a duration ago (2h, 30m, 7d; or -2h) or ISO 8601 (2026-03-01T10:00:00Z);"
        " a time without a zone is UTC. Exit codes: 0 ok, 1 active alarms at/above --fail-on,"
        " 2 bad input, 3 InfluxDB unreachable."
    )

    alerts = subparsers.add_parser(
        "alerts",
        help="show active alarms (or --history), optionally watching for changes",
        description="Show the active alarms (latest state not cleared), most severe first;"
        " --history lists stored alarm events instead.",
        epilog=epilog,
    )
    _influx_args(alerts)
    _filter_args(alerts)
    alerts.add_argument("--history", action="store_true", help="list alarm events, newest first")
    alerts.add_argument(
        "--since",
        default=None,
        help="history start: 24h (ago), now or an ISO 8601 time (without a zone: UTC)",
    )
    alerts.add_argument("--until", default=None, help="history end, same forms (default now)")
    alerts.add_argument("--limit", type=int, default=200, help="most history rows (200)")
    alerts.add_argument(
        "--watch",
        action="store_true",
        help="live from the broker (MQTT, SENSORGATE_MQTT__*): the current alarms from the"
        " retained summaries, then each raised/updated/acknowledged/cleared event, until"
        " Ctrl-C; InfluxDB is not asked",
    )
    alerts.add_argument("--max-updates", type=int, default=None, help=argparse.SUPPRESS)
    alerts.add_argument(
        "--fail-on",
        choices=_SEVERITIES,
        default=None,
        help="exit 1 if an active alarm of this severity or above exists",
    )
    alerts.add_argument(
        "--json", action="store_true", help="print JSON (--watch: one object per line)"
    )
    alerts.set_defaults(func=_cmd_alerts)

    devices = subparsers.add_parser(
        "devices",
        help="show the fleet: online/offline, last seen, latest values",
        description="Devices that reported within --lookback; online if seen within"
        " --offline-after.",
        epilog=epilog,
    )
    _influx_args(devices)
    devices.add_argument("--site", default=None, help="only this site")
    devices.add_argument("--lookback", default="1h", help="how far back to look: 30m, 1h, 1d (1h)")
    devices.add_argument(
        "--offline-after", default="60s", help="silence that means offline: 30s, 5m (60s)"
    )
    devices.add_argument("--json", action="store_true", help="print JSON")
    devices.set_defaults(func=_cmd_devices)

    query = subparsers.add_parser(
        "query",
        help="print a device's readings or aggregates over a time range",
        description="Readings (or stored window aggregates) of one device, bucketed by an"
        " interval chosen from the range (10s, 1m, 5m, ...) unless --interval is given.",
        epilog=epilog,
    )
    _influx_args(query)
    query.add_argument("--site", required=True)
    query.add_argument("--device", required=True)
    query.add_argument("--metric", default=None, help="only this metric")
    query.add_argument(
        "--since",
        default="1h",
        help="start: 1h (ago), now or an ISO 8601 time (without a zone: UTC) (1h)",
    )
    query.add_argument("--until", default="now", help="end, same forms (now)")
    query.add_argument("--interval", default=None, help="bucket (10s, 1m, ...) or raw")
    query.add_argument(
        "--source",
        choices=("readings", "aggregates"),
        default="readings",
        help="(readings) readings: raw readings, or for a range over 6 h (or past the raw"
        " retention) the stored aggregates, raw only where none; aggregates: stored windows",
    )
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query.set_defaults(func=_cmd_query)

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
    _influx_args(dash)
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
    _extend_gateway_run(subparsers)


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


def _extend_gateway_run(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Give ``sensorgate gateway run`` a ``--dashboard-port``: the gateway process serves it."""
    gateway = subparsers.choices.get("gateway")
    if gateway is None:
        return
    run = next(
        (
            a.choices["run"]
            for a in gateway._actions
            if isinstance(a, argparse._SubParsersAction) and "run" in a.choices
        ),
        None,
    )
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


def _with_dashboard(run_gateway: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
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


def _dashboard_options(settings: Any, **given: Any) -> Any:
    """Return the dashboard settings with the command-line options laid over them."""
    from gateway.dashboard.settings import DashboardSettings

    # Not `v not in (None, False)`: 0 == False, and --port 0 (any free port) is a value.
    updates = {k: v for k, v in given.items() if v is not None and v is not False}
    if "token_file" in updates:
        updates["token"] = None  # the file given here wins over the environment
    return DashboardSettings.model_validate({**dict(settings.dashboard), **updates})


def _influx_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--influx-url", default=None, help="InfluxDB URL (SENSORGATE_INFLUX__URL)")
    p.add_argument("--database", default=None, help="database (SENSORGATE_INFLUX__DATABASE)")


def _filter_args(p: argparse.ArgumentParser) -> None:
    for name in ("site", "device", "metric", "rule"):
        p.add_argument(f"--{name}", default=None, help=f"only this {name}")
    p.add_argument("--severity", choices=_SEVERITIES, default=None)
    p.add_argument("--state", choices=_STATES, default=None)


def _settings(args: argparse.Namespace) -> Any:
    from gateway.settings import load_settings

    base = load_settings()
    influx = base.influx.model_dump()
    if args.influx_url:
        influx["url"] = args.influx_url
    if args.database:
        influx["database"] = args.database
    return load_settings(influx=influx)


def _guarded(run: Callable[[], int]) -> int:
    """Map the views' errors to the documented exit codes (:func:`exit_code_for`)."""
    from contract.errors import SensorGateError, exit_code_for

    try:
        return run()
    except SensorGateError as exc:
        print(f"sensorgate: {exc}", file=sys.stderr)
        return exit_code_for(exc)


def _utc(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


_STYLE = {"critical": "bold red", "major": "red", "minor": "yellow", "warning": "cyan"}


def _alarm_table(rows: list[Any], title: str) -> Any:
    from rich.table import Table

    from gateway.views.explain import why

    table = Table(title=title)
    for col in (
        "time",
        "severity",
        "state",
        "site",
        "device",
        "metric",
        "rule",
        "value",
        "threshold",
        "message",
        "why",
        "alarm id",
    ):
        table.add_column(col, no_wrap=col in ("time", "alarm id"))
    for r in rows:
        table.add_row(
            _utc(r.time),
            f"[{_STYLE.get(r.severity, '')}]{r.severity}[/]"
            if r.severity in _STYLE
            else r.severity,
            r.state,
            r.site,
            r.device,
            r.metric,
            r.rule,
            _num(r.value),
            _num(r.threshold),
            r.message,
            why(r.detail, r.folded_raises, r.rate_limited),
            r.alarm_id[:8],
            style=None,
        )
    return table


def _cmd_alerts(args: argparse.Namespace) -> int:
    if args.watch:
        return _guarded(lambda: _watch(args))

    def run() -> int:
        from rich.console import Console

        from contract.alarms import Severity
        from contract.durations import parse_time
        from gateway.influx.query import InfluxQL
        from gateway.views import AlarmFilter, Views

        flt = AlarmFilter(
            site=args.site,
            device=args.device,
            metric=args.metric,
            rule=args.rule,
            severity=args.severity,
            state=args.state,
        )
        now = datetime.now(UTC)
        start = parse_time(args.since, now=now) if args.since else None
        end = parse_time(args.until, now=now) if args.until else None
        client = InfluxQL(_settings(args).influx)
        views = Views(client)
        console = Console(highlight=False)

        def fetch() -> list[Any]:
            if args.history:
                return views.alarm_history(flt, start=start, end=end, limit=args.limit)
            return views.active_alarms(flt)

        def show(rows: list[Any]) -> None:
            if args.json:
                print(json.dumps([r.as_json() for r in rows]), flush=True)
            elif not rows:
                console.print("no alarm events" if args.history else "no active alarms")
            else:
                title = "alarm history" if args.history else f"{len(rows)} active alarm(s)"
                console.print(_alarm_table(rows, title))

        try:
            rows = fetch()
            show(rows)
        finally:
            client.close()
        if args.fail_on and not args.history:
            floor = Severity(args.fail_on).rank
            if any(r.rank >= floor for r in rows if r.state != "cleared"):
                return ExitCode.FAILED
        return ExitCode.OK

    return _guarded(run)


def _watch(args: argparse.Namespace) -> int:
    """``alerts --watch``: live over MQTT (:mod:`gateway.views.alerts_watch`)."""
    from contract.errors import ConfigError
    from gateway.settings import load_settings
    from gateway.views import AlarmFilter
    from gateway.views.alerts_watch import watch_alerts

    for option in ("history", "since", "until", "fail_on"):
        if getattr(args, option) not in (None, False):
            flag = "--" + option.replace("_", "-")
            raise ConfigError(flag, "--watch shows live events; it does not take " + flag)
    flt = AlarmFilter(
        site=args.site,
        device=args.device,
        metric=args.metric,
        rule=args.rule,
        severity=args.severity,
        state=args.state,
    )
    return watch_alerts(load_settings(), flt, as_json=args.json, max_updates=args.max_updates)


def _cmd_devices(args: argparse.Namespace) -> int:
    def run() -> int:
        from rich.console import Console
        from rich.table import Table

        from contract.durations import parse_duration
        from gateway.influx.query import InfluxQL
        from gateway.views import Views

        client = InfluxQL(_settings(args).influx)
        try:
            views = Views(
                client,
                fleet_lookback=parse_duration(args.lookback),
                offline_after=parse_duration(args.offline_after),
            )
            fleet = views.fleet(site=args.site)
        finally:
            client.close()
        if args.json:
            print(json.dumps([d.as_json() for d in fleet]))
            return ExitCode.OK
        table = Table(title=f"{len(fleet)} device(s), {sum(d.online for d in fleet)} online")
        for col in ("site", "device", "status", "last seen", "latest values"):
            table.add_column(col)
        for d in fleet:
            table.add_row(
                d.site,
                d.device,
                "[green]online[/]" if d.online else "[red]offline[/]",
                _utc(d.last_seen),
                ", ".join(f"{k}={_num(v)}" for k, v in d.values.items()),
            )
        Console(highlight=False).print(table)
        return ExitCode.OK

    return _guarded(run)


def _cmd_query(args: argparse.Namespace) -> int:
    def run() -> int:
        from rich.console import Console
        from rich.table import Table

        from contract.durations import parse_time
        from gateway.influx.query import InfluxQL
        from gateway.views import Views

        settings = _settings(args)
        now = datetime.now(UTC)
        start, end = parse_time(args.since, now=now), parse_time(args.until, now=now)
        client = InfluxQL(settings.influx)
        source = args.source
        try:
            views = Views(client)
            if args.source == "aggregates":
                interval, points = views.aggregates(
                    args.site,
                    args.device,
                    start=start,
                    end=end,
                    metric=args.metric,
                    windows=settings.stream.windows,
                    interval=args.interval,
                )
            else:
                interval, points = views.readings(
                    args.site,
                    args.device,
                    start=start,
                    end=end,
                    metric=args.metric,
                    interval=args.interval,
                )
                if views.reads_aggregates(start, end, args.interval):
                    source = "readings (from aggregates)"
        finally:
            client.close()
        if args.format == "json":
            print(json.dumps({"interval": interval, "points": [p.as_json() for p in points]}))
        elif args.format == "csv":
            out = csv.writer(sys.stdout)
            out.writerow(["time", "series", "mean", "min", "max"])
            for p in points:
                j = p.as_json()
                out.writerow([j["time"], j["series"], j["mean"], j["min"], j["max"]])
        else:
            table = Table(title=f"{args.site}/{args.device} {source}, interval {interval}")
            for col in ("time", "series", "mean", "min", "max"):
                table.add_column(col, justify="right" if col in ("mean", "min", "max") else "left")
            for p in points:
                table.add_row(_utc(p.time), p.series, _num(p.mean), _num(p.min), _num(p.max))
            Console(highlight=False).print(table)
        return ExitCode.OK

    return _guarded(run)


def _cmd_dashboard(args: argparse.Namespace) -> int:
    def run() -> int:
        from gateway.dashboard.server import run_dashboard

        settings = _settings(args)
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

    return _guarded(run)


def _cmd_bench_dashboard(args: argparse.Namespace) -> int:
    from gateway.bench.dashboard_fanout import main_from_args

    return main_from_args(args)
