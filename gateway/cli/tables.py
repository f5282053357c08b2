"""How the views' rows look in a terminal: rich tables for ``alerts``, ``devices``, ``query``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

    from gateway.views import AlarmRow, DeviceStatus, SeriesPoint

__all__ = ["alarm_table", "fleet_table", "num", "series_table", "utc"]

_STYLE = {"critical": "bold red", "major": "red", "minor": "yellow", "warning": "cyan"}
_ALARM_COLUMNS = (
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
)


def utc(when: datetime) -> str:
    """Return ``when`` as ``YYYY-MM-DD HH:MM:SS UTC``."""
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def num(value: float | None) -> str:
    """Return a value in four significant digits ('' for none)."""
    return "" if value is None else f"{value:.4g}"


def alarm_table(rows: Sequence[AlarmRow], title: str) -> Table:
    """Return alarm rows as a table, the severity coloured, with the ``why`` sentence."""
    from rich.table import Table

    from gateway.views.explain import why

    table = Table(title=title)
    for col in _ALARM_COLUMNS:
        table.add_column(col, no_wrap=col in ("time", "alarm id"))
    for r in rows:
        table.add_row(
            utc(r.time),
            f"[{_STYLE[r.severity]}]{r.severity}[/]" if r.severity in _STYLE else r.severity,
            r.state,
            r.site,
            r.device,
            r.metric,
            r.rule,
            num(r.value),
            num(r.threshold),
            r.message,
            why(r.detail, r.folded_raises, r.rate_limited),
            r.alarm_id[:8],
            style=None,
        )
    return table


def fleet_table(fleet: Sequence[DeviceStatus]) -> Table:
    """Return the fleet as a table: status, last seen, latest values."""
    from rich.table import Table

    table = Table(title=f"{len(fleet)} device(s), {sum(d.online for d in fleet)} online")
    for col in ("site", "device", "status", "last seen", "latest values"):
        table.add_column(col)
    for d in fleet:
        table.add_row(
            d.site,
            d.device,
            "[green]online[/]" if d.online else "[red]offline[/]",
            utc(d.last_seen),
            ", ".join(f"{k}={num(v)}" for k, v in d.values.items()),
        )
    return table


def series_table(points: Sequence[SeriesPoint], title: str) -> Table:
    """Return chart points as a table: time, series, mean, min, max."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("time", "series", "mean", "min", "max"):
        table.add_column(col, justify="right" if col in ("mean", "min", "max") else "left")
    for p in points:
        table.add_row(utc(p.time), p.series, num(p.mean), num(p.min), num(p.max))
    return table
