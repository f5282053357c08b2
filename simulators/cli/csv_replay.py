"""``sensorgate csv-replay``: replay a CSV file as one device's readings."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from simulators.cli import _common as common

if TYPE_CHECKING:
    from contract import TopicScheme
    from simulators.csv_replay import CsvTable, ReplayReport
    from simulators.links import LinkPool


@dataclass(frozen=True, slots=True)
class _Replay:
    """What the options and the file say, read and checked before anything is published."""

    table: CsvTable
    topics: TopicScheme
    device: str
    speed: float | None
    units: dict[str, str]
    rebase_to: datetime | None


def _rebase(text: str | None, table: Any) -> datetime | None:
    from contract.durations import parse_time

    if text is None or not table.rows:
        return None
    now = datetime.now(UTC)
    if text == "ends-now":
        span: timedelta = max(row.time for row in table.rows) - table.rows[0].time
        return now - span
    return parse_time(text, now=now)


def run(args: argparse.Namespace) -> int:
    """Run the command; return its exit code."""
    from contract.errors import BrokerError, ConfigError, TopicError
    from simulators.links import LinkPool

    try:
        plan = _read(args)
    except (ConfigError, TopicError, ValueError) as exc:
        common.err(str(exc))
        return common.EXIT_CONFIG
    table = plan.table
    _print_notes(args, table)
    if table.errors and not args.skip_bad_rows and not args.dry_run:
        common.err(
            f"{len(table.errors)} row(s) cannot be read; nothing published"
            " (use --skip-bad-rows to publish the rest)"
        )
        return common.EXIT_CONFIG
    info = _info(args, table)
    if args.dry_run:
        common.emit(args, "csv-replay (dry run)", _dry_run_doc(args, table), info)
        return common.EXIT_CONFIG if table.errors else common.EXIT_OK
    pool = LinkPool(
        common.settings(args), size=1, client_prefix=f"sg-csv-{args.site}-{plan.device}"
    )
    try:
        pool.start()
    except BrokerError as exc:
        common.err(str(exc))
        return common.EXIT_BROKER
    try:
        report, drained = _replay(args, plan, pool)
    finally:
        pool.stop()
    doc = {
        **report.as_dict(),
        "all_acknowledged": drained,
        "metrics": list(table.metrics),
        "time_format": table.time_format,
        "timezone": table.timezone,
    }
    common.emit(args, "csv-replay", doc, [*info, *_summary(args, plan.device, report)])
    return common.EXIT_OK if drained and not report.stopped_early else common.EXIT_BEHIND


def _read(args: argparse.Namespace) -> _Replay:
    """Read the file and check the options (raises what the command refuses)."""
    from contract import TopicScheme
    from simulators.csv_replay import read_csv

    topics = TopicScheme(prefix=args.prefix)
    speed = common.speed(args.speed)
    units = dict(item.split("=", 1) for item in args.unit)
    table = read_csv(
        args.file,
        delimiter=args.delimiter,
        time_column=args.time_column,
        time_format=args.time_format,
        tz=args.tz,
        exclude=args.exclude,
        columns=args.columns,
    )
    device = args.device or f"{args.file.resolve().parent.name}-{args.file.stem}"
    rebase_to = _rebase(args.rebase, table)
    topics.telemetry(args.site, device)
    return _Replay(table, topics, device, speed, units, rebase_to)


def _print_notes(args: argparse.Namespace, table: CsvTable) -> None:
    """List the unreadable rows and the excluded columns the file does not have."""
    for err in table.errors:
        print(f"{args.file}: {err}", file=sys.stderr)
    if table.unknown_excluded:
        print(
            f"note: excluded columns not in the file: {', '.join(table.unknown_excluded)}",
            file=sys.stderr,
        )


def _info(args: argparse.Namespace, table: CsvTable) -> list[tuple[str, Any]]:
    """Return the summary rows that describe the file."""
    return [
        ("file", str(args.file)),
        ("delimiter", repr(table.delimiter)),
        ("time column", table.time_column),
        ("time format", table.time_format),
        ("naive times read in", table.timezone),
        ("metrics", ", ".join(table.metrics)),
        ("rows", len(table.rows)),
        ("bad rows", len(table.errors)),
        ("empty cells", table.empty_cells),
    ]


def _dry_run_doc(args: argparse.Namespace, table: CsvTable) -> dict[str, Any]:
    """Return the JSON document of ``--dry-run``."""
    return {
        "file": str(args.file),
        "delimiter": table.delimiter,
        "time_column": table.time_column,
        "time_format": table.time_format,
        "timezone": table.timezone,
        "metrics": list(table.metrics),
        "rows": len(table.rows),
        "empty_cells": table.empty_cells,
        "bad_row_lines": [{"line": e.line, "reason": e.reason} for e in table.errors],
    }


def _show(report: ReplayReport) -> None:
    """Print one progress line on stderr."""
    print(
        f"[{report.wall_s:7.1f}s] rows {report.events:,}/{report.rows:,}"
        f"  readings {report.readings:,}  acked {report.acknowledged:,}",
        file=sys.stderr,
    )


def _replay(args: argparse.Namespace, plan: _Replay, pool: LinkPool) -> tuple[ReplayReport, bool]:
    """Replay the rows over the started pool; return the report and whether all were acked."""
    from simulators.csv_replay import replay_csv

    stop = threading.Event()
    sequence_start = (
        args.sequence_start if args.sequence_start is not None else (time.time_ns() // 1000)
    )
    report: ReplayReport = common.run_interruptibly(
        lambda: replay_csv(
            plan.table,
            pool,
            plan.topics,
            site=args.site,
            device=plan.device,
            sensor=args.sensor,
            speed=plan.speed,
            units=plan.units,
            qos=args.qos,
            skip_bad_rows=True,
            sequence_start=sequence_start,
            rebase_to=plan.rebase_to,
            stop=stop,
            progress=_show if args.progress_every > 0 else None,
            progress_every_s=args.progress_every or 5.0,
        ),
        stop.set,
    )
    drained = pool.wait_acknowledged(30.0)
    report.acknowledged = pool.acknowledged
    return report, drained


def _summary(args: argparse.Namespace, device: str, report: ReplayReport) -> list[tuple[str, Any]]:
    """Return the summary rows of the replay itself."""
    return [
        ("site/device", f"{args.site}/{device}"),
        ("events", report.events),
        ("readings", report.readings),
        ("acknowledged", report.acknowledged),
        ("first time", report.first_time),
        ("last time", report.last_time),
        ("wall (s)", report.wall_s),
    ]
