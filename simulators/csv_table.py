"""A CSV file read for replay: delimiter, timestamp column and format detected, rows checked.

Each value column becomes a metric (its header is the metric id); each row carries its
own timestamp. What is detected, unless given:

- the delimiter, among ``, ; TAB |`` (sniffed from the start of the file);
- the timestamp column: the first whose header is ``timestamp``, ``time``,
  ``datetime``, ``date``, ``ts`` (any case) or whose first value reads as ISO 8601;
- the timestamp format, from the first row: ISO 8601 with or without a zone (``T`` or
  space between date and time), else a number: epoch milliseconds when it is at least
  1e11, else epoch seconds. A ``strptime`` pattern may be given instead.

Naive timestamps (no zone, like SKAB's) are local time of an unknown zone: they are
read as **UTC** unless ``tz`` names their zone (an IANA name, e.g. ``Europe/Moscow``).

Rows that cannot be read (a bad timestamp, a cell that is not a finite number, the
wrong number of cells) are listed with their line numbers in :attr:`CsvTable.errors`.
An empty cell means "no reading of that metric in that row" and is counted; a row
with no value at all is a bad row. :mod:`simulators.csv_replay` publishes the rows.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contract import check_id
from contract.errors import ConfigError, SensorGateError, TopicError

__all__ = ["CsvRow", "CsvRowsError", "CsvTable", "RowError", "read_csv"]

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
    text = _read_text(path)
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
    value_columns = _value_columns(path, header, time_column, excluded, columns)
    if time_format is None or time_format == "auto":
        first_time = first_row[time_index] if first_row and len(first_row) > time_index else ""
        time_format = _detect_format(first_time)
    table = CsvTable(
        path=path,
        delimiter=delimiter,
        time_column=time_column,
        time_format=time_format,
        timezone=str(tz or "UTC"),
        metrics=tuple(value_columns),
        ignored_columns=tuple(h for h in header if h in excluded),
        unknown_excluded=tuple(sorted(excluded - set(header))),
    )
    _read_rows(table, header, body, _time_parser(time_format, zone))
    return table


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # tolerate a byte-order mark
    except OSError as exc:
        raise ConfigError("csv", f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError("csv", f"{path} is not UTF-8 text ({exc.reason})") from None


def _value_columns(
    path: Path,
    header: list[str],
    time_column: str,
    excluded: set[str],
    columns: Sequence[str] | None,
) -> list[str]:
    """Return the columns that become metrics; refuse a selection that leaves none."""
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
    return value_columns


def _read_rows(
    table: CsvTable,
    header: list[str],
    body: list[list[str]],
    parse_time: Callable[[str], datetime],
) -> None:
    """Append each row to ``table.rows``, or its reason to ``table.errors``."""
    time_index = header.index(table.time_column)
    indices = [(header.index(name), name) for name in table.metrics]
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
                    f"column {table.time_column!r}: cannot read {row[time_index]!r} as"
                    f" {table.time_format} ({exc})",
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
