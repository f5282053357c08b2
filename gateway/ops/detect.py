"""Offline detection: the gateway's detection engine run over recorded data.

:func:`run_detection` feeds one device's telemetry events (in time order) through
the gateway's own shard engine (:mod:`dataflows.offline`: the same decode-free columns,
windows, detector banks and alarm machines as the live flow, on a clock that follows
event time, so a gap in the data is silence).
:func:`table_events` turns a CSV read by the simulators' CSV reader into telemetry
events, one per row. ``sensorgate detect`` is the command on top.
"""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from contract import Reading, TelemetryEvent
from contract.alarms import AlarmClearedEvent, AlarmEvent, AlarmRaisedEvent, encode_alarm
from dataflows.eventclock import to_us
from dataflows.offline import run_offline
from dataflows.rules import RuleSet
from gateway.ops.columns import EventColumns
from simulators.csv_replay import CsvTable

__all__ = [
    "AlarmInterval",
    "DetectionRun",
    "alarm_intervals",
    "run_detection",
    "summary_table",
    "table_events",
    "write_events",
]

_NS = uuid.UUID("0b9c7f44-6a43-5d1e-8d0f-3c1b9f0f6a51")


def table_events(
    table: CsvTable, *, site: str, device: str, sensor: str = "csv"
) -> list[TelemetryEvent]:
    """One telemetry event per CSV row (ids derived from the file and line: reproducible)."""
    events = []
    base = str(table.path)
    for seq, row in enumerate(table.rows):
        readings = tuple(
            Reading(sensor=sensor, metric=m, value=v, time=row.time) for m, v in row.values.items()
        )
        events.append(
            TelemetryEvent.model_validate(
                {
                    "id": str(uuid.uuid5(_NS, f"{base}:{row.line}")),
                    "source": f"/sg/{site}/{device}",
                    "subject": device,
                    "time": row.time,
                    "data": {
                        "site": site,
                        "device": device,
                        "sequence": seq,
                        "readings": readings,
                    },
                }
            )
        )
    return events


@dataclass
class AlarmInterval:
    """When one alarm was active: ``end_us`` None while still active at the end."""

    alarm_id: str
    device: str
    series: str
    rule: str
    kind: str
    start_us: int
    end_us: int | None


@dataclass
class DetectionRun:
    """The outcome of detection over one device's data."""

    site: str
    device: str
    events: list[AlarmEvent] = field(default_factory=list)
    telemetry: int = 0
    readings: int = 0
    aggregates: int = 0
    first_us: int | None = None
    last_us: int | None = None
    stale: int = 0

    def intervals(self) -> list[AlarmInterval]:
        """Active intervals of every alarm raised."""
        return alarm_intervals(self.events)


def alarm_intervals(events: Iterable[AlarmEvent]) -> list[AlarmInterval]:
    """Pair raised and cleared events into intervals."""
    open_: dict[str, AlarmInterval] = {}
    done: list[AlarmInterval] = []
    for event in events:
        d = event.data
        if isinstance(event, AlarmRaisedEvent):
            series = "*" if d.sensor == "*" else f"{d.sensor}/{d.metric}"
            open_[d.alarm_id] = AlarmInterval(
                d.alarm_id, d.device, series, d.rule, d.kind, to_us(d.event_time), None
            )
        elif isinstance(event, AlarmClearedEvent) and d.alarm_id in open_:
            interval = open_.pop(d.alarm_id)
            interval.end_us = to_us(d.event_time)
            done.append(interval)
    done.extend(open_.values())
    return sorted(done, key=lambda i: i.start_us)


def run_detection(
    events: Sequence[TelemetryEvent],
    rules: RuleSet,
    *,
    site: str,
    device: str,
    windows: Sequence[str] = ("1m",),
) -> DetectionRun:
    """Run the engine over one device's telemetry, in time order (see module docstring)."""
    run = DetectionRun(site, device)
    ordered = sorted(events, key=lambda e: min(r.time for r in e.data.readings))
    columns = EventColumns()
    for event in ordered:
        columns.event(event.id)
        for r in event.data.readings:
            columns.reading(r.sensor, r.metric, to_us(r.time), r.value, r.fault or "")
    result = run_offline(rules, site, device, columns.build(), windows=windows)
    run.events = result.alarms
    run.aggregates = len(result.aggregates)
    run.stale = result.stale
    run.telemetry = len(ordered)
    run.readings = len(columns.values)
    if columns.times:
        run.first_us, run.last_us = min(columns.times), max(columns.times)
    return run


def write_events(events: Iterable[AlarmEvent], stream: IO[str]) -> int:
    """Write alarm events as JSON lines; return how many."""
    n = 0
    for event in events:
        stream.write(encode_alarm(event).decode("utf-8") + "\n")
        n += 1
    return n


def summary_table(runs: Sequence[DetectionRun]) -> str:
    """Return a plain-text table of alarms raised and cleared per device, series and rule."""
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for run in runs:
        for event in run.events:
            d = event.data
            series = "*" if d.sensor == "*" else f"{d.sensor}/{d.metric}"
            counts[(d.device, series, d.rule, event.type.split(".")[-2])] += 1
    keys = sorted({k[:3] for k in counts})
    rows: list[list[Any]] = [["device", "series", "rule", "raised", "updated", "cleared"]]
    for key in keys:
        rows.append([*key, *(counts[(*key, t)] for t in ("raised", "updated", "cleared"))])
    total_r = sum(run.readings for run in runs)
    widths = [max(len(str(r[i])) for r in rows) for i in range(6)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.append(
        f"{sum(r.telemetry for r in runs)} events, {total_r} readings,"
        f" {sum(len(r.events) for r in runs)} alarm events"
        + (
            f", {sum(r.stale for r in runs)} stale readings skipped"
            if any(r.stale for r in runs)
            else ""
        )
    )
    return "\n".join(lines)


def detect_csv_command(
    *,
    csv_path: Path,
    rules: RuleSet,
    site: str,
    device: str,
    sensor: str,
    exclude: Sequence[str],
    windows: Sequence[str],
    out: Path | None,
    quiet: bool = False,
) -> int:
    """Run ``sensorgate detect`` (see :mod:`gateway.cli.detection`)."""
    from simulators.csv_replay import CsvRowsError, read_csv

    table = read_csv(csv_path, exclude=exclude)
    if table.errors:
        raise CsvRowsError(table.path, table.errors)
    events = table_events(table, site=site, device=device, sensor=sensor)
    run = run_detection(events, rules, site=site, device=device, windows=windows)
    if out is None:
        write_events(run.events, sys.stdout)
        sys.stdout.flush()
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as stream:
            write_events(run.events, stream)
    if not quiet:
        print(summary_table([run]), file=sys.stderr)
    return 0
