"""Viewing commands of ``sensorgate``: ``alerts``, ``devices``, ``query``, ``dashboard``.

They read InfluxDB through :class:`~gateway.views.Views` (settings from the usual
``SENSORGATE_*`` variables, or ``--influx-url``/``--database``).

Exit codes, for scripts:

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
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = ["EXIT_ALARMS", "EXIT_BAD_INPUT", "EXIT_OK", "EXIT_UNREACHABLE", "register"]

EXIT_OK = 0
EXIT_ALARMS = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3

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
    alerts.add_argument("--watch", action="store_true", help="keep showing changes until Ctrl-C")
    alerts.add_argument("--interval", type=float, default=2.0, help="seconds between polls (2)")
    alerts.add_argument("--max-updates", type=int, default=None, help=argparse.SUPPRESS)
    alerts.add_argument(
        "--fail-on",
        choices=_SEVERITIES,
        default=None,
        help="exit 1 if an active alarm of this severity or above exists",
    )
    alerts.add_argument("--json", action="store_true", help="print JSON (one line per update)")
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
        " Settings from SENSORGATE_* variables; the acknowledge button publishes a command"
        " over MQTT and needs --token unless --read-only.",
    )
    _influx_args(dash)
    dash.add_argument("--host", default="127.0.0.1", help="listen address (127.0.0.1)")
    dash.add_argument("--port", type=int, default=8080, help="listen port (8080; 0 = any)")
    dash.add_argument("--read-only", action="store_true", help="no acknowledge button")
    dash.add_argument("--token", default=None, help="token the acknowledge action requires")
    dash.add_argument("--duration", type=float, default=None, help=argparse.SUPPRESS)
    dash.set_defaults(func=_cmd_dashboard)
    _extend_gateway_run(subparsers)


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
    run.add_argument("--dashboard-host", default="127.0.0.1", help="dashboard listen address")
    run.add_argument("--dashboard-token", default=None, help="token of the acknowledge action")
    run.add_argument("--dashboard-read-only", action="store_true", help="no acknowledge action")
    run.set_defaults(func=_with_dashboard(run.get_default("func")))


def _with_dashboard(run_gateway: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        if args.dashboard_port is None or (getattr(args, "process_id", None) or 0) != 0:
            return run_gateway(args)
        import logging

        from gateway.dashboard.server import Dashboard
        from gateway.settings import load_settings

        dash = Dashboard(
            load_settings(),
            host=args.dashboard_host,
            port=args.dashboard_port,
            read_only=args.dashboard_read_only,
            token=args.dashboard_token,
        ).start()
        logging.getLogger("gateway").info("dashboard at %s", dash.url)
        try:
            return run_gateway(args)
        finally:
            dash.stop()

    return run


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
    """Map the views' errors to the documented exit codes."""
    from contract.errors import ConfigError, StorageError, TimeFormatError
    from gateway.views.queries import ViewInputError

    try:
        return run()
    except (ViewInputError, ConfigError, TimeFormatError) as exc:
        print(f"sensorgate: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StorageError as exc:
        print(f"sensorgate: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE


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
    def run() -> int:
        from rich.console import Console

        from contract.alarms import Severity
        from contract.durations import parse_time
        from gateway.influx.query import InfluxQL
        from gateway.views.queries import AlarmFilter, Views

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
            updates = 1
            if args.watch:
                last = [r.as_json() for r in rows]
                try:
                    while args.max_updates is None or updates < args.max_updates:
                        time.sleep(args.interval)
                        rows = fetch()
                        now = [r.as_json() for r in rows]
                        if now != last:
                            last = now
                            if not args.json:
                                console.rule(_utc(datetime.now(UTC)))
                            show(rows)
                            updates += 1
                except KeyboardInterrupt:
                    pass
        finally:
            client.close()
        if args.fail_on and not args.history:
            floor = Severity(args.fail_on).rank
            if any(r.rank >= floor for r in rows if r.state != "cleared"):
                return EXIT_ALARMS
        return EXIT_OK

    return _guarded(run)


def _cmd_devices(args: argparse.Namespace) -> int:
    def run() -> int:
        from rich.console import Console
        from rich.table import Table

        from contract.durations import parse_duration
        from gateway.influx.query import InfluxQL
        from gateway.views.queries import Views

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
            return EXIT_OK
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
        return EXIT_OK

    return _guarded(run)


def _cmd_query(args: argparse.Namespace) -> int:
    def run() -> int:
        from rich.console import Console
        from rich.table import Table

        from contract.durations import parse_time
        from gateway.influx.query import InfluxQL
        from gateway.views.queries import Views

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
        return EXIT_OK

    return _guarded(run)


def _cmd_dashboard(args: argparse.Namespace) -> int:
    def run() -> int:
        from gateway.dashboard.server import run_dashboard

        return run_dashboard(
            _settings(args),
            host=args.host,
            port=args.port,
            read_only=args.read_only,
            token=args.token,
            duration_s=args.duration,
        )

    return _guarded(run)
