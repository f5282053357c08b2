"""What the views return: alarm rows, device status, chart points; and the alarm filter."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from contract.alarms import AlarmData, AlarmDetail, AlarmState, Severity
from gateway.influx.query import quote_ident
from gateway.views.clauses import ViewInputError, from_ns, tag_value

__all__ = [
    "ALARM_TAGS",
    "DETAIL_FIELDS",
    "AlarmFilter",
    "AlarmRow",
    "DeviceStatus",
    "SeriesPoint",
    "alarm_series",
    "points_of",
    "series_name",
    "utc_iso",
]

ALARM_TAGS = ("site", "device", "metric", "rule", "severity", "state")

DETAIL_FIELDS: tuple[str, ...] = tuple(AlarmDetail.model_fields)
"""Fields of the ``alarms`` measurement that hold an alarm's explanation."""


def utc_iso(when: datetime | None = None) -> str:
    """Return ``when`` (default: now) as ISO 8601 UTC with a ``Z``, as the JSON gives times."""
    return (when or datetime.now(UTC)).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class AlarmFilter:
    """Which alarms to show; ``None`` means any.

    The same filter narrows a stored-alarm query (:meth:`clauses`) and the live alarms
    of ``alerts --watch`` (:meth:`accepts`).
    """

    site: str | None = None
    device: str | None = None
    metric: str | None = None
    rule: str | None = None
    severity: str | None = None
    state: str | None = None

    def __post_init__(self) -> None:
        if self.severity is not None and self.severity not in set(Severity):
            raise ViewInputError(
                f"severity must be one of {', '.join(Severity)}; got {self.severity!r}"
            )
        if self.state is not None and self.state not in set(AlarmState):
            raise ViewInputError(
                f"state must be one of {', '.join(AlarmState)}; got {self.state!r}"
            )

    def clauses(self) -> list[str]:
        """Return the WHERE clauses of the set filters (values validated and quoted)."""
        out = []
        for key in ALARM_TAGS:
            value = getattr(self, key)
            if value is not None:
                out.append(f"{quote_ident(key)} = {tag_value(key, value)}")
        return out

    def accepts(self, alarm: AlarmData) -> bool:
        """Whether a live ``alarm`` passes the filters (its metric or ``sensor/metric``)."""
        return (
            (self.site is None or alarm.site == self.site)
            and (self.device is None or alarm.device == self.device)
            and (self.metric is None or self.metric in (alarm.metric, alarm_series(alarm)))
            and (self.rule is None or alarm.rule == self.rule)
            and (self.severity is None or alarm.severity.value == self.severity)
            and (self.state is None or alarm.state.value == self.state)
        )


def alarm_series(alarm: AlarmData) -> str:
    """Return a live alarm's ``sensor/metric``."""
    return f"{alarm.sensor}/{alarm.metric}"


@dataclass(frozen=True)
class AlarmRow:
    """One stored alarm event (the latest one of its alarm, for active alarms)."""

    time: datetime
    alarm_id: str
    site: str
    device: str
    metric: str
    rule: str
    severity: str
    state: str
    value: float | None = None
    threshold: float | None = None
    message: str = ""
    sensor: str = ""
    kind: str = ""
    detail: dict[str, Any] | None = None
    """Why the detector fired (:class:`~contract.alarms.AlarmDetail` items), if stored."""
    folded_raises: int | None = None
    rate_limited: bool | None = None

    @property
    def rank(self) -> int:
        """Severity rank, higher is more urgent (unknown severities rank lowest)."""
        try:
            return Severity(self.severity).rank
        except ValueError:
            return -1

    def as_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (time as ISO 8601 UTC)."""
        from gateway.views.explain import why

        doc = asdict(self)
        doc["time"] = utc_iso(self.time)
        doc["why"] = why(self.detail, self.folded_raises, self.rate_limited)
        return doc

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AlarmRow:
        """Build from a raw ``alarms`` row."""
        return cls(
            time=from_ns(row["time"]) or datetime.now(UTC),
            alarm_id=str(row.get("alarm_id") or ""),
            site=row.get("site") or "",
            device=row.get("device") or "",
            metric=row.get("metric") or "",
            rule=row.get("rule") or "",
            severity=row.get("severity") or "",
            state=row.get("state") or "",
            value=row.get("value"),
            threshold=row.get("threshold"),
            message=row.get("message") or "",
            sensor=row.get("sensor") or "",
            kind=row.get("kind") or "",
            detail=_detail(row),
            folded_raises=row.get("folded_raises"),
            rate_limited=row.get("rate_limited"),
        )


def _detail(row: dict[str, Any]) -> dict[str, Any] | None:
    found = {k: row[k] for k in DETAIL_FIELDS if row.get(k) is not None}
    return found or None


@dataclass(frozen=True)
class DeviceStatus:
    """One device of the fleet: when it was last seen and its latest values."""

    site: str
    device: str
    last_seen: datetime
    online: bool
    values: dict[str, float] = field(default_factory=dict)
    """``sensor/metric`` -> latest value."""

    def as_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "site": self.site,
            "device": self.device,
            "last_seen": utc_iso(self.last_seen),
            "online": self.online,
            "values": self.values,
        }


@dataclass(frozen=True)
class SeriesPoint:
    """One point of a chart series (raw reading, or a bucket of aggregates)."""

    time: datetime
    series: str
    """``sensor/metric``."""
    mean: float | None
    min: float | None = None
    max: float | None = None

    def as_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "time": utc_iso(self.time),
            "series": self.series,
            "mean": self.mean,
            "min": self.min,
            "max": self.max,
        }


def series_name(row: dict[str, Any]) -> str:
    """Return a row's ``sensor/metric``."""
    return f"{row.get('sensor', '')}/{row.get('metric', '')}"


def points_of(rows: list[dict[str, Any]], start: datetime) -> list[SeriesPoint]:
    """Return the buckets of aggregate rows that hold a mean, as chart points."""
    return [
        SeriesPoint(from_ns(r["time"]) or start, series_name(r), r["mean"], r["min"], r["max"])
        for r in rows
        if r.get("mean") is not None
    ]
