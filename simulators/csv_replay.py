"""CSV replay: any CSV with a timestamp column becomes one device's readings.

Each value column becomes a metric (its header is the metric id) and each row one
telemetry event whose readings carry the row's own timestamp as event time. Replay
runs at real time (the gaps between rows are kept), accelerated (``speed=N``) or as
fast as possible (``speed=None``).

:mod:`simulators.csv_table` reads the file (what it detects, how naive timestamps and
bad rows are treated); this module publishes it. By default a table with bad rows is
refused before anything is published; with ``skip_bad_rows`` the good rows are
replayed and the bad ones still reported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contract import TopicScheme
from simulators.csv_table import CsvRow, CsvRowsError, CsvTable, RowError, read_csv
from simulators.links import Publisher
from simulators.timebase import LagStats, Timebase
from simulators.wire import TelemetryTemplate, format_time

__all__ = [
    "CsvRow",
    "CsvRowsError",
    "CsvTable",
    "ReplayReport",
    "RowError",
    "read_csv",
    "replay_csv",
]


@dataclass
class ReplayReport:
    """What a replay did."""

    path: str
    site: str
    device: str
    rows: int
    bad_rows: int
    events: int = 0
    readings: int = 0
    acknowledged: int = 0
    wall_s: float = 0.0
    first_time: str | None = None
    last_time: str | None = None
    stopped_early: bool = False
    lag: LagStats = field(default_factory=LagStats)
    errors: list[RowError] = field(default_factory=list)

    @classmethod
    def of(cls, table: CsvTable, *, site: str, device: str) -> ReplayReport:
        """Return the empty report of a replay of ``table``."""
        return cls(
            path=str(table.path),
            site=site,
            device=device,
            rows=len(table.rows),
            bad_rows=len(table.errors),
            errors=list(table.errors),
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {
            "path": self.path,
            "site": self.site,
            "device": self.device,
            "rows": self.rows,
            "bad_rows": self.bad_rows,
            "bad_row_lines": [{"line": e.line, "reason": e.reason} for e in self.errors],
            "events": self.events,
            "readings": self.readings,
            "acknowledged": self.acknowledged,
            "wall_s": round(self.wall_s, 3),
            "first_time": self.first_time,
            "last_time": self.last_time,
            "stopped_early": self.stopped_early,
            "lag": self.lag.as_dict(),
        }


def replay_csv(
    table: CsvTable,
    publisher: Publisher,
    topics: TopicScheme,
    *,
    site: str,
    device: str,
    sensor: str = "csv",
    speed: float | None = None,
    units: dict[str, str] | None = None,
    sequence_start: int = 0,
    qos: int = 1,
    skip_bad_rows: bool = False,
    rebase_to: datetime | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[ReplayReport], None] | None = None,
    progress_every_s: float = 5.0,
) -> ReplayReport:
    """Publish the rows of ``table`` as one device's telemetry; one event per row.

    Raises :class:`CsvRowsError` (before publishing anything) if some rows could not
    be read, unless ``skip_bad_rows``. Event times are the rows' own timestamps, unless
    ``rebase_to`` is given: then every timestamp is shifted by the same amount so that
    the first row falls at ``rebase_to`` (the gaps stay as they are). The gateway
    refuses readings older than its ``max_past_s`` (30 days by default), so an old
    dataset such as SKAB (2020) needs either that or a larger limit.
    """
    if table.errors and not skip_bad_rows:
        raise CsvRowsError(table.path, table.errors)
    metric_units = {m: (units or {}).get(m, "") for m in table.metrics}
    template = TelemetryTemplate(site=site, device=device, sensor=sensor, units=metric_units)
    target = _Target(publisher, topics.telemetry(site, device), template, qos)
    stop = stop or threading.Event()
    report = ReplayReport.of(table, site=site, device=device)
    if not table.rows:
        return report
    first = table.rows[0].time
    shift = timedelta(0) if rebase_to is None else rebase_to.astimezone(UTC) - first
    report.first_time, report.last_time = (
        format_time(row.time + shift) for row in (table.rows[0], table.rows[-1])
    )
    timebase = Timebase(start=first, speed=speed)
    timebase.begin()
    try:
        _publish_rows(
            table.rows,
            target,
            report,
            timebase,
            shift=shift,
            sequence=sequence_start,
            stop=stop,
            progress=progress,
            progress_every_s=progress_every_s,
        )
    finally:
        report.stopped_early = stop.is_set()
        report.wall_s = timebase.elapsed()
        report.acknowledged = publisher.acknowledged
    return report


@dataclass(frozen=True, slots=True)
class _Target:
    """Where and how the rows are published."""

    publisher: Publisher
    topic: str
    template: TelemetryTemplate
    qos: int


def _publish_rows(
    rows: list[CsvRow],
    target: _Target,
    report: ReplayReport,
    timebase: Timebase,
    *,
    shift: timedelta,
    sequence: int,
    stop: threading.Event,
    progress: Callable[[ReplayReport], None] | None,
    progress_every_s: float,
) -> None:
    """Publish one event per row on the timebase's schedule, counting into ``report``."""
    first = rows[0].time
    next_progress = progress_every_s
    for row in rows:
        if timebase.speed is not None:
            report.lag.add(timebase.wait_for((row.time - first).total_seconds(), stop))
        if stop.is_set():
            break
        time_text = format_time(row.time + shift)
        payload = target.template.render(
            sequence, time_text, [(m, v, time_text) for m, v in row.values.items()]
        )
        target.publisher.publish(target.topic, payload, qos=target.qos)
        sequence += 1
        report.events += 1
        report.readings += len(row.values)
        if progress is not None and timebase.elapsed() >= next_progress:
            next_progress = timebase.elapsed() + progress_every_s
            report.wall_s = timebase.elapsed()
            report.acknowledged = target.publisher.acknowledged
            progress(report)
