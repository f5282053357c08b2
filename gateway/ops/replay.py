"""``sensorgate replay``: backtest windows and alarm rules over stored raw readings.

Reads the ``readings`` measurement of InfluxDB between ``--since`` and ``--until``
(InfluxQL, one series per device, in event-time order, a chunk of time at a time),
groups each device's readings by instant into events, and runs them through the
gateway's own shard engine (:class:`~dataflows.offline.OfflineDevice`: the same
windows, detector banks and alarm machines as the live flow), on a clock that follows
event time (so deadman silence is measured in event time, as ``sensorgate detect`` does). Results
are written apart from live data: to ``--database-out`` (measurements ``aggregates``
and ``alarms``, in that database's default retention policy) or, by default, to the
same database as ``replay_aggregates`` and ``replay_alarms`` (in the aggregates'
retention policy, :mod:`gateway.influx.layout`). A summary table (or ``--json``) says
what each rule did.

Live alarm *acknowledgements* and device status are not in ``readings``: a replay
sees telemetry only (offline rules stay quiet).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.durations import parse_duration, parse_time
from dataflows.eventclock import to_us
from gateway.ops.columns import EventColumns

if TYPE_CHECKING:
    from dataflows.offline import OfflineDevice, OfflineEvents, OfflineResult
    from dataflows.rules import RuleSet
    from gateway.influx.query import InfluxQL
    from gateway.influx.writer import V1Writer, V3Writer
    from gateway.influx.writer_v2 import V2Writer
    from gateway.settings import GatewaySettings

    Writer = V1Writer | V2Writer | V3Writer

__all__ = ["ReplayReport", "register", "run_replay"]

_REPLAY_NS = uuid.UUID("3b0c0b52-1f0e-5d0c-8f8e-2f3b9f7a9d11")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``replay`` to a ``sensorgate`` parser."""
    p = subparsers.add_parser(
        "replay",
        help="backtest windows and alarm rules over raw readings stored in InfluxDB",
        description="Re-run the gateway's windows and alarm rules over the stored readings"
        " of a time range, per device in event-time order; write the results apart from"
        " live data and print a summary. InfluxDB from SENSORGATE_INFLUX__* settings.",
    )
    p.add_argument(
        "--since",
        required=True,
        help="start: 2h or 1d (ago), now, or an ISO 8601 time (without a zone: UTC)",
    )
    p.add_argument("--until", default="now", help="end, exclusive, in the same forms (now)")
    p.add_argument("--rules", type=Path, default=None, help="rules TOML (default: built-in)")
    p.add_argument(
        "--database-out",
        default=None,
        help="write aggregates and alarms to this database (default: the same database,"
        " measurements replay_aggregates and replay_alarms)",
    )
    p.add_argument("--site", default=None, help="only this site")
    p.add_argument("--device", default=None, help="only this device")
    p.add_argument("--chunk", default="1h", help="time span read per query: 30m, 1h, 1d (1h)")
    p.add_argument("--dry-run", action="store_true", help="write nothing, only report")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd)


@dataclass
class ReplayReport:
    """What a replay read and produced."""

    since: str
    until: str
    rules: str
    output: str
    devices: int = 0
    events: int = 0
    readings: int = 0
    aggregates: int = 0
    alarm_events: int = 0
    by_rule: dict[str, dict[str, int]] = field(default_factory=dict)
    """rule -> {raised, cleared, updated, active_at_end}."""
    by_device: dict[str, int] = field(default_factory=dict)
    """site/device -> alarms raised."""

    def as_dict(self) -> dict[str, Any]:
        """Return the report as plain data."""
        return dict(self.__dict__)


def _ns(when: datetime) -> int:
    return to_us(when) * 1000


Row = dict[str, Any]


def _rows(
    q: InfluxQL, since: datetime, until: datetime, chunk: timedelta, where: str
) -> Iterator[list[Row]]:
    """Yield the stored readings of ``[since, until)`` one chunk of time at a time."""
    t = since
    while t < until:
        end = min(t + chunk, until)
        yield q.query(
            f"SELECT value, fault, sensor, metric FROM {q.layout.readings}"
            f" WHERE time >= {_ns(t)} AND time < {_ns(end)}{where} GROUP BY site, device"
        )
        t = end


def _events(site: str, device: str, rows: list[Row]) -> OfflineEvents:
    """One device's rows (time order) as offline events: one per distinct time."""
    columns = EventColumns()
    last = None
    for row in rows:
        t_us = int(row["time"]) // 1000
        if t_us != last:
            columns.event(str(uuid.uuid5(_REPLAY_NS, f"{site}/{device}/{t_us}")))
            last = t_us
        value = row.get("value")
        fault = (row.get("fault") or "fault") if value is None else ""
        columns.reading(row["sensor"], row["metric"], t_us, value, fault)
    return columns.build()


class _Output:
    """Counts what the engine produced into the report and writes it as line protocol."""

    def __init__(self, report: ReplayReport, writer: Writer | None, prefix: str) -> None:
        self.report = report
        self.writer = writer
        self.prefix = prefix
        self.lines: list[str] = []
        self.transitions: dict[str, Counter[str]] = defaultdict(Counter)
        self.raised_by_device: Counter[str] = Counter()

    def emit(self, result: OfflineResult) -> None:
        """Count and queue one batch of aggregates and alarm events."""
        from gateway.influx.lineprotocol import aggregate_line, alarm_line

        for agg in result.aggregates:
            self.report.aggregates += 1
            self.lines.append(self.prefix + aggregate_line(agg))
        for event in result.alarms:
            self.report.alarm_events += 1
            kind = event.type.split(".")[-2]
            self.transitions[event.data.rule][kind] += 1
            if kind == "raised":
                self.raised_by_device[f"{event.data.site}/{event.data.device}"] += 1
            self.lines.append(alarm_line(event, f"{self.prefix}alarms"))
        if len(self.lines) >= 5000:
            self.flush()

    def flush(self) -> None:
        """Write what is queued (nothing on a dry run)."""
        if self.writer is not None and self.lines:
            self.writer.write(self.lines)
        self.lines.clear()

    def close(self) -> None:
        """Close the writer."""
        if self.writer is not None:
            self.writer.close()


def _writer(settings: GatewaySettings, database_out: str | None, dry_run: bool) -> Writer | None:
    """Return the results' writer: beside the live data, or into ``database_out``."""
    from gateway.influx.layout import StorageLayout
    from gateway.influx.writer import V1Writer, make_writer

    if dry_run:
        return None
    out_settings = settings.influx.model_copy(
        update={"database": database_out} if database_out else {}
    )
    # Beside the live aggregates and alarms, in their retention policy; a database of
    # its own keeps everything in its default policy.
    policy = None if database_out else StorageLayout.of(settings.influx).policy("replay_alarms")
    writer = make_writer(out_settings, policy=policy)
    if database_out and isinstance(writer, V1Writer):
        writer.ensure_database()
    return writer


def _where(site: str | None, device: str | None) -> str:
    from gateway.influx.query import quote_string

    where = ""
    if site:
        where += f" AND site = {quote_string(site)}"
    if device:
        where += f" AND device = {quote_string(device)}"
    return where


def run_replay(
    settings: GatewaySettings,
    *,
    since: datetime,
    until: datetime,
    rules_path: Path | None = None,
    database_out: str | None = None,
    site: str | None = None,
    device: str | None = None,
    chunk: timedelta = timedelta(hours=1),
    dry_run: bool = False,
) -> ReplayReport:
    """Replay the readings of ``[since, until)``; write and return what came out."""
    from dataflows.rules import load_rules
    from gateway.influx.query import InfluxQL

    rules = load_rules(rules_path)
    report = ReplayReport(
        since=since.isoformat(),
        until=until.isoformat(),
        rules=str(rules_path) if rules_path else "defaults",
        output=f"database {database_out}" if database_out else "measurements replay_*",
    )
    devices: dict[tuple[str, str], OfflineDevice] = {}
    out = _Output(
        report, _writer(settings, database_out, dry_run), "" if database_out else "replay_"
    )
    q = InfluxQL(settings.influx)
    try:
        for rows in _rows(q, since, until, chunk, _where(site, device)):
            _feed(rows, devices, rules, tuple(settings.stream.windows), out)
        end_us = _ns(until) // 1000
        for engine in devices.values():
            # The end of the range: every window closes, every silence is judged.
            out.emit(engine.finish(end_us))
            for rule, _alarm_id in engine.active_alarms():
                out.transitions[rule]["active_at_end"] += 1
        out.flush()
    finally:
        q.close()
        out.close()
    report.devices = len(devices)
    report.by_rule = {rule: dict(c) for rule, c in sorted(out.transitions.items())}
    report.by_device = dict(sorted(out.raised_by_device.items()))
    return report


def _feed(
    rows: list[Row],
    devices: dict[tuple[str, str], OfflineDevice],
    rules: RuleSet,
    windows: tuple[str, ...],
    out: _Output,
) -> None:
    """Run one chunk of stored rows through each device's engine (made on first sight)."""
    from dataflows.offline import OfflineDevice

    by_device: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        by_device[(row["site"], row["device"])].append(row)
    for key, dev_rows in by_device.items():
        engine = devices.get(key)
        if engine is None:
            engine = devices[key] = OfflineDevice(rules, *key, windows=windows)
        dev_rows.sort(key=lambda r: int(r["time"]))
        events = _events(*key, dev_rows)
        out.report.events += len(events.counts)
        out.report.readings += len(dev_rows)
        out.emit(engine.feed(events))


def _cmd(args: argparse.Namespace) -> int:
    from contract.errors import ExitCode
    from gateway.settings import load_settings

    settings = load_settings()
    now = datetime.now(UTC)
    try:
        since, until = parse_time(args.since, now=now), parse_time(args.until, now=now)
        chunk = parse_duration(args.chunk)
        if chunk <= timedelta(0):
            raise ValueError(f"--chunk must be longer than zero; got {args.chunk!r}")
    except ValueError as exc:
        print(f"sensorgate replay: {exc}", file=sys.stderr)
        return ExitCode.REFUSED
    report = run_replay(
        settings,
        since=since,
        until=until,
        rules_path=args.rules,
        database_out=args.database_out,
        site=args.site,
        device=args.device,
        chunk=chunk,
        dry_run=args.dry_run,
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    print(f"replay {report.since} .. {report.until} (rules: {report.rules}; out: {report.output})")
    print(
        f"devices {report.devices}  events {report.events}  readings {report.readings}"
        f"  aggregates {report.aggregates}  alarm events {report.alarm_events}"
    )
    print(f"{'rule':<24} {'raised':>7} {'updated':>8} {'ack':>5} {'cleared':>8} {'active':>7}")
    for rule, c in report.by_rule.items():
        print(
            f"{rule:<24} {c.get('raised', 0):>7} {c.get('updated', 0):>8}"
            f" {c.get('acknowledged', 0):>5} {c.get('cleared', 0):>8}"
            f" {c.get('active_at_end', 0):>7}"
        )
    return 0
