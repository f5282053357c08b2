"""CSV replay: any CSV with a timestamp column becomes one device's readings.

Each value column becomes a metric (its header is the metric id) and each row one
telemetry event whose readings carry the row's own timestamp as event time. Replay
runs at real time (the gaps between rows are kept), accelerated (``speed=N``) or as
fast as possible (``speed=None``).

What is detected, unless given:

- the delimiter, among ``, ; TAB |`` (sniffed from the start of the file);
- the timestamp column: the first whose header is ``timestamp``, ``time``,
  ``datetime``, ``date``, ``ts`` (any case) or whose first value reads as ISO 8601;
- the timestamp format, from the first row: ISO 8601 with or without a zone (``T`` or
  space between date and time), else a number: epoch milliseconds when it is at least
  1e11, else epoch seconds. A ``strptime`` pattern may be given instead.

Naive timestamps (no zone, like SKAB's) are local time of an unknown zone: they are
read as **UTC** unless ``tz`` names their zone (an IANA name, e.g. ``Europe/Moscow``).

Rows that cannot be read (a bad timestamp, a cell that is not a finite number, the
wrong number of cells) are listed with their line numbers; by default the replay is
refused before anything is published, and with ``skip_bad_rows`` the good rows are
replayed and the bad ones still reported. An empty cell means "no reading of that
metric in that row" and is counted; a row with no value at all is a bad row.
"""

from __future__ import annotations

import csv
import io
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contract import TopicScheme, check_id
from contract.errors import ConfigError, SensorGateError, TopicError
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

_TIME_NAMES = ("timestamp", "time", "datetime", "date", "ts", "date_time", "time_utc")
_DELIMITERS = ",;\t|"
_EPOCH_MS_THRESHOLD = 1e11  # as seconds that is the year 5138; as ms, March 1973


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that could not be read: its line number in the file and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class CsvRow:
    """One readable row: its line, its event time (UTC) and its values by metric."""

    line: int
    time: datetime
    values: dict[str, float]


@dataclass
class CsvTable:
    """A CSV file read for replay."""

    path: Path
    delimiter: str
    time_column: str
    time_format: str
    """``iso``, ``epoch_s``, ``epoch_ms`` or a ``strptime`` pattern."""
    timezone: str
    """The zone naive timestamps were read in (``UTC`` unless told)."""
    metrics: tuple[str, ...]
    rows: list[CsvRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    empty_cells: int = 0
    ignored_columns: tuple[str, ...] = ()
    unknown_excluded: tuple[str, ...] = ()
    """Excluded column names that the file does not have (reported, not an error)."""


class CsvRowsError(SensorGateError):
    """Rows of a CSV file could not be read; ``errors`` lists them with line numbers."""

    def __init__(self, path: Path, errors: Sequence[RowError], limit: int = 20) -> None:
        shown = "\n  ".join(str(e) for e in errors[:limit])
        more = f"\n  ... and {len(errors) - limit} more" if len(errors) > limit else ""
        super().__init__(
            f"{path}: {len(errors)} row(s) cannot be read (nothing was published; replay"
            f" with skip_bad_rows / --skip-bad-rows to publish the rest):\n  {shown}{more}"
        )
        self.path = path
        self.errors = list(errors)


def _sniff_delimiter(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        header = sample.splitlines()[0] if sample else ""
        counts = {d: header.count(d) for d in _DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        if counts[best] == 0:
            raise ConfigError(
                "delimiter", "cannot detect it (one column only?); give it explicitly"
            ) from None
        return best


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.strip())


def _looks_iso(text: str) -> bool:
    try:
        _parse_iso(text)
    except ValueError:
        return False
    return not _is_number(text)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _time_parser(fmt: str, zone: tzinfo) -> Callable[[str], datetime]:
    def aware(value: datetime) -> datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return value.astimezone(UTC)

    if fmt == "iso":
        return lambda text: aware(_parse_iso(text))
    if fmt == "epoch_s":
        return lambda text: datetime.fromtimestamp(_finite(text), UTC)
    if fmt == "epoch_ms":
        return lambda text: datetime.fromtimestamp(_finite(text) / 1000.0, UTC)
    return lambda text: aware(datetime.strptime(text.strip(), fmt))  # noqa: DTZ007 - zone applied


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def _detect_format(first: str) -> str:
    if _is_number(first):
        return "epoch_ms" if abs(float(first)) >= _EPOCH_MS_THRESHOLD else "epoch_s"
    if _looks_iso(first):
        return "iso"
    raise ConfigError(
        "time_format",
        f"cannot detect the timestamp format of {first!r}; give iso, epoch_s, epoch_ms or a"
        " strptime pattern such as '%d/%m/%Y %H:%M:%S'",
    )


def _pick_time_column(header: list[str], first_row: list[str] | None) -> str:
    for name in header:
        if name.strip().lower() in _TIME_NAMES:
            return name
    if first_row is not None:
        for name, cell in zip(header, first_row, strict=False):
            if _looks_iso(cell):
                return name
    raise ConfigError(
        "time_column",
        f"no timestamp column found among {header}; name it explicitly",
    )


def read_csv(
    path: Path | str,
    *,
    delimiter: str | None = None,
    time_column: str | None = None,
    time_format: str | None = None,
    tz: str | None = None,
    exclude: Sequence[str] = (),
    columns: Sequence[str] | None = None,
) -> CsvTable:
    """Read a CSV file for replay (see the module docstring for what is detected).

    ``columns`` keeps only those value columns; ``exclude`` drops columns (SKAB's
    ``anomaly`` and ``changepoint`` are labels, not metrics).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a byte-order mark
    except OSError as exc:
        raise ConfigError("csv", f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError("csv", f"{path} is not UTF-8 text ({exc.reason})") from None
    if delimiter is None:
        delimiter = _sniff_delimiter(text[:16_384])
    elif delimiter in ("\\t", "tab", "TAB"):
        delimiter = "\t"
    try:
        zone: tzinfo = ZoneInfo(tz) if tz else UTC
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("tz", f"unknown time zone {tz!r}; use an IANA name") from None

    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ConfigError("csv", f"{path} is empty") from None
    body = list(reader)
    first_row = next((r for r in body if any(c.strip() for c in r)), None)
    if time_column is None:
        time_column = _pick_time_column(header, first_row)
    elif time_column not in header:
        raise ConfigError("time_column", f"{time_column!r} is not a column of {path}: {header}")
    time_index = header.index(time_column)

    excluded = set(exclude)
    unknown = tuple(sorted(excluded - set(header)))
    value_columns = [h for h in header if h != time_column and h not in excluded]
    if columns is not None:
        missing = [c for c in columns if c not in header]
        if missing:
            raise ConfigError("columns", f"{missing} are not columns of {path}: {header}")
        value_columns = [h for h in value_columns if h in set(columns)]
    if not value_columns:
        raise ConfigError("columns", f"{path} has no value column left to replay")
    for name in value_columns:
        try:
            check_id("metric", name)
        except TopicError as exc:
            raise ConfigError("columns", f"column {name!r} cannot be a metric id: {exc}") from None
    indices = [(header.index(name), name) for name in value_columns]

    if time_format is None or time_format == "auto":
        first_time = first_row[time_index] if first_row and len(first_row) > time_index else ""
        time_format = _detect_format(first_time)
    parse_time = _time_parser(time_format, zone)

    table = CsvTable(
        path=path,
        delimiter=delimiter,
        time_column=time_column,
        time_format=time_format,
        timezone=str(tz or "UTC"),
        metrics=tuple(value_columns),
        ignored_columns=tuple(h for h in header if h in excluded),
        unknown_excluded=unknown,
    )
    # csv.reader's line_num is lost after list(); count physical lines again per row.
    line = 1
    for row in body:
        line += 1 + sum(cell.count("\n") for cell in row)
        if not any(cell.strip() for cell in row):
            continue  # a blank line carries nothing; it is not a row
        if len(row) != len(header):
            table.errors.append(RowError(line, f"expected {len(header)} cells; got {len(row)}"))
            continue
        try:
            when = parse_time(row[time_index])
        except (ValueError, OverflowError, OSError) as exc:
            table.errors.append(
                RowError(
                    line,
                    f"column {time_column!r}: cannot read {row[time_index]!r} as"
                    f" {time_format} ({exc})",
                )
            )
            continue
        values: dict[str, float] = {}
        bad = None
        for index, name in indices:
            cell = row[index].strip()
            if not cell:
                table.empty_cells += 1
                continue
            try:
                values[name] = _finite(cell)
            except ValueError:
                bad = f"column {name!r}: cannot read {cell!r} as a finite number"
                break
        if bad is not None:
            table.errors.append(RowError(line, bad))
        elif not values:
            table.errors.append(RowError(line, "no value in any value column"))
        else:
            table.rows.append(CsvRow(line, when, values))
    return table


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
    units = units or {}
    template = TelemetryTemplate(
        site=site,
        device=device,
        sensor=sensor,
        units={m: units.get(m, "") for m in table.metrics},
    )
    topic = topics.telemetry(site, device)
    stop = stop or threading.Event()
    report = ReplayReport(
        path=str(table.path),
        site=site,
        device=device,
        rows=len(table.rows),
        bad_rows=len(table.errors),
        errors=list(table.errors),
    )
    if not table.rows:
        return report
    first = table.rows[0].time
    shift = timedelta(0) if rebase_to is None else rebase_to.astimezone(UTC) - first
    report.first_time = format_time(first + shift)
    report.last_time = format_time(table.rows[-1].time + shift)
    timebase = Timebase(start=first, speed=speed)
    timebase.begin()
    next_progress = progress_every_s
    sequence = sequence_start
    try:
        for row in table.rows:
            if speed is not None:
                report.lag.add(timebase.wait_for((row.time - first).total_seconds(), stop))
            if stop.is_set():
                break
            time_text = format_time(row.time + shift)
            payload = template.render(
                sequence, time_text, [(m, v, time_text) for m, v in row.values.items()]
            )
            publisher.publish(topic, payload, qos=qos)
            sequence += 1
            report.events += 1
            report.readings += len(row.values)
            if progress is not None and timebase.elapsed() >= next_progress:
                next_progress = timebase.elapsed() + progress_every_s
                report.wall_s = timebase.elapsed()
                report.acknowledged = publisher.acknowledged
                progress(report)
    finally:
        report.stopped_early = stop.is_set()
        report.wall_s = timebase.elapsed()
        report.acknowledged = publisher.acknowledged
    return report
