"""Viewing commands of ``sensorgate``: ``alerts``, ``devices``, ``query``.

They read InfluxDB through :class:`~gateway.views.Views` (settings from the usual
``SENSORGATE_*`` variables, or ``--influx-url``/``--database``), except ``alerts
--watch``, which follows the broker (:mod:`gateway.views.alerts_watch`). The tables are
drawn by :mod:`gateway.cli.tables`; ``dashboard`` is in :mod:`gateway.cli.dashboard`.

Exit codes, for scripts (the table is :class:`contract.errors.ExitCode`; errors are
mapped by :func:`gateway.cli.entry.run_command`):

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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from contract.errors import ExitCode
from gateway.cli.influx_args import influx_args, settings_of

if TYPE_CHECKING:
    from gateway.settings import GatewaySettings
    from gateway.views import AlarmFilter, AlarmRow, Views

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["register"]

_SEVERITIES = ("critical", "major", "minor", "warning", "info")
_STATES = ("active", "acknowledged", "cleared")
_EPILOG = (
    "Times: now, a duration ago (2h, 30m, 7d; or -2h) or ISO 8601 (2026-03-01T10:00:00Z);"
    " a time without a zone is UTC. Exit codes: 0 ok, 1 active alarms at/above --fail-on,"
    " 2 bad input, 3 InfluxDB unreachable."
)


def register(subparsers: Subparsers) -> None:
    """Add ``alerts``, ``devices`` and ``query`` to a ``sensorgate`` parser."""
    _add_alerts(subparsers)
    _add_devices(subparsers)
    _add_query(subparsers)


def _add_alerts(subparsers: Subparsers) -> None:
    alerts = subparsers.add_parser(
        "alerts",
        help="show active alarms (or --history), optionally watching for changes",
        description="Show the active alarms (latest state not cleared), most severe first;"
        " --history lists stored alarm events instead.",
        epilog=_EPILOG,
    )
    influx_args(alerts)
    for name in ("site", "device", "metric", "rule"):
        alerts.add_argument(f"--{name}", default=None, help=f"only this {name}")
    alerts.add_argument("--severity", choices=_SEVERITIES, default=None)
    alerts.add_argument("--state", choices=_STATES, default=None)
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


def _add_devices(subparsers: Subparsers) -> None:
    devices = subparsers.add_parser(
        "devices",
        help="show the fleet: online/offline, last seen, latest values",
        description="Devices that reported within --lookback; online if seen within"
        " --offline-after.",
        epilog=_EPILOG,
    )
    influx_args(devices)
    devices.add_argument("--site", default=None, help="only this site")
    devices.add_argument("--lookback", default="1h", help="how far back to look: 30m, 1h, 1d (1h)")
    devices.add_argument(
        "--offline-after", default="60s", help="silence that means offline: 30s, 5m (60s)"
    )
    devices.add_argument("--json", action="store_true", help="print JSON")
    devices.set_defaults(func=_cmd_devices)


def _add_query(subparsers: Subparsers) -> None:
    query = subparsers.add_parser(
        "query",
        help="print a device's readings or aggregates over a time range",
        description="Readings (or stored window aggregates) of one device, bucketed by an"
        " interval chosen from the range (10s, 1m, 5m, ...) unless --interval is given.",
        epilog=_EPILOG,
    )
    influx_args(query)
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


@contextmanager
def _views(settings: GatewaySettings, **options: Any) -> Iterator[Views]:
    """Yield :class:`~gateway.views.Views` over the InfluxDB of ``settings``; close it after."""
    from gateway.influx.query import InfluxQL
    from gateway.views import Views

    client = InfluxQL(settings.influx)
    try:
        yield Views(client, **options)
    finally:
        client.close()


def _print(table: Any) -> None:
    from rich.console import Console

    Console(highlight=False).print(table)


def _alarm_filter(args: argparse.Namespace) -> AlarmFilter:
    from gateway.views import AlarmFilter

    return AlarmFilter(
        site=args.site,
        device=args.device,
        metric=args.metric,
        rule=args.rule,
        severity=args.severity,
        state=args.state,
    )


def _cmd_alerts(args: argparse.Namespace) -> int:
    from contract.durations import parse_time

    if args.watch:
        return _watch(args)
    flt = _alarm_filter(args)
    now = datetime.now(UTC)
    start = parse_time(args.since, now=now) if args.since else None
    end = parse_time(args.until, now=now) if args.until else None
    with _views(settings_of(args)) as views:
        if args.history:
            rows = views.alarm_history(flt, start=start, end=end, limit=args.limit)
        else:
            rows = views.active_alarms(flt)
    _show_alarms(rows, args)
    return _fail_on(rows, args)


def _show_alarms(rows: list[AlarmRow], args: argparse.Namespace) -> None:
    from gateway.cli.tables import alarm_table

    if args.json:
        print(json.dumps([r.as_json() for r in rows]), flush=True)
    elif not rows:
        _print("no alarm events" if args.history else "no active alarms")
    else:
        title = "alarm history" if args.history else f"{len(rows)} active alarm(s)"
        _print(alarm_table(rows, title))


def _fail_on(rows: list[AlarmRow], args: argparse.Namespace) -> int:
    """``--fail-on``: FAILED if an active alarm is at or above that severity."""
    from contract.alarms import Severity

    if args.fail_on and not args.history:
        floor = Severity(args.fail_on).rank
        if any(r.rank >= floor for r in rows if r.state != "cleared"):
            return ExitCode.FAILED
    return ExitCode.OK


def _watch(args: argparse.Namespace) -> int:
    """``alerts --watch``: live over MQTT (:mod:`gateway.views.alerts_watch`)."""
    from contract.errors import ConfigError
    from gateway.settings import load_settings
    from gateway.views.alerts_watch import watch_alerts

    for option in ("history", "since", "until", "fail_on"):
        if getattr(args, option) not in (None, False):
            flag = "--" + option.replace("_", "-")
            raise ConfigError(flag, "--watch shows live events; it does not take " + flag)
    flt = _alarm_filter(args)
    return watch_alerts(load_settings(), flt, as_json=args.json, max_updates=args.max_updates)


def _cmd_devices(args: argparse.Namespace) -> int:
    from contract.durations import parse_duration
    from gateway.cli.tables import fleet_table

    settings = settings_of(args)
    lookback, offline_after = parse_duration(args.lookback), parse_duration(args.offline_after)
    with _views(settings, fleet_lookback=lookback, offline_after=offline_after) as views:
        fleet = views.fleet(site=args.site)
    if args.json:
        print(json.dumps([d.as_json() for d in fleet]))
    else:
        _print(fleet_table(fleet))
    return ExitCode.OK


def _cmd_query(args: argparse.Namespace) -> int:
    from contract.durations import parse_time
    from gateway.cli.tables import series_table

    settings = settings_of(args)
    now = datetime.now(UTC)
    start, end = parse_time(args.since, now=now), parse_time(args.until, now=now)
    source = args.source
    with _views(settings) as views:
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
    if args.format == "json":
        print(json.dumps({"interval": interval, "points": [p.as_json() for p in points]}))
    elif args.format == "csv":
        out = csv.writer(sys.stdout)
        out.writerow(["time", "series", "mean", "min", "max"])
        for p in points:
            j = p.as_json()
            out.writerow([j["time"], j["series"], j["mean"], j["min"], j["max"]])
    else:
        title = f"{args.site}/{args.device} {source}, interval {interval}"
        _print(series_table(points, title))
    return ExitCode.OK
