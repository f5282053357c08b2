"""InfluxQL views over the stored data (schema in ARCHITECTURE.md).

Every value a user can give (site, device, sensor, metric, rule, severity, state,
times, windows, limits) is validated here and then quoted with
:func:`~gateway.influx.query.quote_string`; identifiers (measurements, fields, tag
keys) come only from fixed lists in this module. A value that is not acceptable raises
:class:`ViewInputError` before any statement is built, so user input never reaches
InfluxDB unquoted.

Measurements are named through a :class:`~gateway.influx.layout.StorageLayout`
(``"aggregates"."aggregates"`` with retention policies), taken from the runner when it
has one (:class:`~gateway.influx.query.InfluxQL` does). Raw readings may expire (30
days by default): :meth:`Views.readings` reads the stored aggregates for a long range
(more than :data:`AGGREGATES_AFTER`, or reaching past the raw retention) and the raw
readings only where no aggregates exist.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from contract.alarms import AlarmDetail, AlarmState, Severity
from contract.durations import format_duration, parse_duration
from contract.errors import InputError, StorageError, TimeFormatError, TopicError
from contract.ids import check_id
from gateway.influx.layout import StorageLayout
from gateway.influx.query import quote_ident, quote_string
from gateway.views.bands import LOOKBACK, BandPoint, Bucket, trailing_band

__all__ = [
    "AGGREGATES_AFTER",
    "AlarmFilter",
    "AlarmRow",
    "DeviceStatus",
    "QueryRunner",
    "SeriesPoint",
    "ViewInputError",
    "Views",
    "choose_interval",
    "parse_interval",
]


class ViewInputError(InputError):
    """A filter, time or name given to a view is not acceptable (says which and why)."""


class QueryRunner(Protocol):
    """What the views need from an InfluxQL client (``InfluxQL`` or a fake).

    A runner may also carry a ``layout`` (:class:`~gateway.influx.layout.StorageLayout`)
    saying where each measurement is stored; :class:`Views` uses it when given none.
    """

    def query(self, q: str) -> list[dict[str, Any]]:
        """Run one statement and return its rows."""
        ...


# Chart intervals, smallest first: the interval of a range is the first that gives at
# most MAX_POINTS buckets.
INTERVALS: tuple[str, ...] = ("10s", "1m", "5m", "15m", "1h", "6h", "1d", "7d")
MAX_POINTS = 400
AGGREGATES_AFTER = timedelta(hours=6)
"""A range longer than this is charted from the stored aggregates, not the raw readings."""
AGG_FIELDS = ("mean", "min", "max", "count", "first", "last", "stddev")
ALARM_FIELDS = ("alarm_id", "value", "threshold", "message")
ALARM_TAGS = ("site", "device", "metric", "rule", "severity", "state")
DETAIL_FIELDS: tuple[str, ...] = tuple(AlarmDetail.model_fields)
"""Fields of the ``alarms`` measurement that hold an alarm's explanation."""


def parse_interval(text: str) -> tuple[str, timedelta]:
    """Return a bucket interval as an InfluxQL duration literal and as a timedelta.

    ``text`` is a duration as :func:`contract.durations.parse_duration` reads it
    (``90s``, ``1.5m``, ``2h``), of whole milliseconds and at least 1 ms; the literal
    is its shortest exact form (``1.5m`` gives ``90s``). Raises :class:`ViewInputError`.
    """
    try:
        step = parse_duration(text)
    except TimeFormatError as exc:
        raise ViewInputError(str(exc)) from None
    if step < _MS or step % _MS:
        raise ViewInputError(f"an interval must be whole milliseconds, at least 1ms; got {text!r}")
    return format_duration(step), step


_MS = timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(when: datetime) -> int:
    return ((when - _EPOCH) // timedelta(microseconds=1)) * 1000


def choose_interval(span: timedelta, *, max_points: int = MAX_POINTS) -> str:
    """Return the smallest chart interval giving at most ``max_points`` buckets over ``span``."""
    for name in INTERVALS:
        if span / parse_duration(name) <= max_points:
            return name
    return INTERVALS[-1]


_LOOSE_KINDS = frozenset({"metric", "rule", "window"})
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")


def _id(kind: str, value: str) -> str:
    """Validate one tag value and quote it as an InfluxQL string literal.

    Sites, devices and sensors follow the contract's id rules; an alarm's metric and
    rule may also hold ``/`` (``sensor/metric``) but no control character.
    """
    # Checked here for every kind: contract.ids.check_id lets one trailing newline
    # through (its pattern ends in ``$``, which matches before a final ``\n``).
    if isinstance(value, str) and _CONTROL_RE.search(value):
        raise ViewInputError(f"{kind} {value!r} contains a control character")
    if kind in _LOOSE_KINDS:
        if not isinstance(value, str) or not 1 <= len(value) <= 256:
            raise ViewInputError(f"{kind} must be 1 to 256 characters; got {value!r}")
        if _CONTROL_RE.search(value) or value.endswith("\\"):
            raise ViewInputError(
                f"{kind} {value!r} contains a control character or ends with a backslash"
            )
        return quote_string(value)
    try:
        return quote_string(check_id(kind, value))
    except TopicError as exc:
        raise ViewInputError(str(exc)) from None


def _ts(value: Any) -> datetime | None:
    if value is None:
        return None
    # Exact to the microsecond (a float of nanoseconds is not).
    return _EPOCH + timedelta(microseconds=int(value) // 1000)


@dataclass(frozen=True)
class AlarmFilter:
    """Filters of an alarm query; ``None`` means any."""

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
                out.append(f"{quote_ident(key)} = {_id(key, value)}")
        return out


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
        doc["time"] = self.time.isoformat().replace("+00:00", "Z")
        doc["why"] = why(self.detail, self.folded_raises, self.rate_limited)
        return doc

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AlarmRow:
        """Build from a raw ``alarms`` row."""
        return cls(
            time=_ts(row["time"]) or datetime.now(UTC),
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
            "last_seen": self.last_seen.isoformat().replace("+00:00", "Z"),
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
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "series": self.series,
            "mean": self.mean,
            "min": self.min,
            "max": self.max,
        }


def _time_clause(start: datetime, end: datetime) -> str:
    if start.tzinfo is None or end.tzinfo is None:
        raise ViewInputError("times must be timezone-aware (UTC)")
    if end <= start:
        raise ViewInputError(f"the range must end after it starts; got {start} .. {end}")
    return f"time >= {_ns(start)} AND time <= {_ns(end)}"


def _limit(limit: int) -> int:
    if not isinstance(limit, int) or not 1 <= limit <= 100_000:
        raise ViewInputError(f"limit must be an integer from 1 to 100000; got {limit!r}")
    return limit


class Views:
    """The read-side queries of SensorGate over one InfluxQL client."""

    def __init__(
        self,
        runner: QueryRunner,
        *,
        alarm_lookback: timedelta = timedelta(days=30),
        fleet_lookback: timedelta = timedelta(hours=1),
        offline_after: timedelta = timedelta(seconds=60),
        layout: StorageLayout | None = None,
        aggregates_after: timedelta = AGGREGATES_AFTER,
    ) -> None:
        self._q = runner
        self.alarm_lookback = alarm_lookback
        self.fleet_lookback = fleet_lookback
        self.offline_after = offline_after
        found = getattr(runner, "layout", None)
        self.layout: StorageLayout = layout or (
            found if isinstance(found, StorageLayout) else StorageLayout.single()
        )
        """Where each measurement is stored (the runner's, or everything in the default)."""
        self.aggregates_after = aggregates_after

    def _run(self, q: str) -> list[dict[str, Any]]:
        # A database (or retention policy) the gateway has not created yet holds
        # nothing: not an error here.
        try:
            return self._q.query(q)
        except StorageError as exc:
            if "database not found" in str(exc) or "retention policy not found" in str(exc):
                return []
            raise

    # -- alarms ---------------------------------------------------------------------
    def active_alarms(self, flt: AlarmFilter | None = None) -> list[AlarmRow]:
        """Alarms whose latest event is not ``cleared``, most severe and newest first.

        One key (site, device, sensor, metric, rule) has at most one live alarm, so the latest
        event of each key tells whether its alarm is still on.
        """
        flt = flt or AlarmFilter()
        state = flt.state
        where = [f"time > now() - {int(self.alarm_lookback.total_seconds())}s"]
        where += AlarmFilter(**{**asdict(flt), "state": None}).clauses()
        q = (
            f"SELECT * FROM {self.layout.alarms} WHERE "
            + " AND ".join(where)
            + " GROUP BY site, device, sensor, metric, rule ORDER BY time DESC LIMIT 1"
        )
        rows = [AlarmRow.from_row(r) for r in self._run(q)]
        active = [r for r in rows if r.state != AlarmState.CLEARED.value]
        if state is not None:
            active = [r for r in active if r.state == state]
        active.sort(key=lambda r: (-r.rank, -r.time.timestamp()))
        return active

    def alarm_history(
        self,
        flt: AlarmFilter | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 1000,
    ) -> list[AlarmRow]:
        """Return the stored alarm events matching ``flt`` in ``[start, end]``, newest first."""
        end = end or datetime.now(UTC) + timedelta(minutes=5)
        start = start or end - self.alarm_lookback
        where = [_time_clause(start, end), *(flt or AlarmFilter()).clauses()]
        q = (
            f"SELECT * FROM {self.layout.alarms} WHERE "
            + " AND ".join(where)
            + f" ORDER BY time DESC LIMIT {_limit(limit)}"
        )
        return [AlarmRow.from_row(r) for r in self._run(q)]

    # -- fleet ------------------------------------------------------------------------
    def fleet(self, *, site: str | None = None, now: datetime | None = None) -> list[DeviceStatus]:
        """Every device seen within the fleet lookback, with its last values."""
        now = now or datetime.now(UTC)
        where = [f"time > now() - {int(self.fleet_lookback.total_seconds())}s"]
        if site is not None:
            where.append(f"site = {_id('site', site)}")
        q = (
            f"SELECT last(value) AS value FROM {self.layout.readings} WHERE "
            + " AND ".join(where)
            + " GROUP BY site, device, sensor, metric"
        )
        return self._fold_devices(self._run(q), now)

    def device(self, site: str, device: str, *, now: datetime | None = None) -> DeviceStatus | None:
        """One device's status and latest values, or ``None`` if not seen lately."""
        now = now or datetime.now(UTC)
        q = (
            f"SELECT last(value) AS value FROM {self.layout.readings} WHERE"
            f" time > now() - {int(self.fleet_lookback.total_seconds())}s"
            f" AND site = {_id('site', site)} AND device = {_id('device', device)}"
            " GROUP BY site, device, sensor, metric"
        )
        found = self._fold_devices(self._run(q), now)
        return found[0] if found else None

    def _fold_devices(self, rows: list[dict[str, Any]], now: datetime) -> list[DeviceStatus]:
        seen: dict[tuple[str, str], tuple[datetime, dict[str, float]]] = {}
        for row in rows:
            key = (row.get("site", ""), row.get("device", ""))
            when = _ts(row["time"]) or now
            last, values = seen.get(key, (when, {}))
            values[f"{row.get('sensor', '')}/{row.get('metric', '')}"] = row["value"]
            seen[key] = (max(last, when), values)
        return [
            DeviceStatus(
                site=site,
                device=dev,
                last_seen=last,
                online=now - last <= self.offline_after,
                values=dict(sorted(values.items())),
            )
            for (site, dev), (last, values) in sorted(seen.items())
        ]

    # -- series -----------------------------------------------------------------------
    def readings(
        self,
        site: str,
        device: str,
        *,
        start: datetime,
        end: datetime,
        metric: str | None = None,
        sensor: str | None = None,
        interval: str | None = None,
        windows: tuple[str, ...] | None = None,
        now: datetime | None = None,
    ) -> tuple[str, list[SeriesPoint]]:
        """Return the readings of one device over ``[start, end]`` in buckets of ``interval``.

        ``interval`` defaults to :func:`choose_interval` of the range; ``raw`` returns the
        readings themselves (at most 10,000). A long range (:meth:`reads_aggregates`) is
        read from the stored aggregates of the largest of ``windows`` (default: the
        windows stored for the device) not longer than the interval, and from the raw
        readings only before the first and after the last bucket of aggregates (so the
        raw data can expire, and the windows not closed yet still show).
        """
        where = [
            _time_clause(start, end),
            f"site = {_id('site', site)}",
            f"device = {_id('device', device)}",
        ]
        if metric is not None:
            where.append(f"metric = {_id('metric', metric)}")
        if sensor is not None:
            where.append(f"sensor = {_id('sensor', sensor)}")
        interval = interval or choose_interval(end - start)
        if interval == "raw":
            q = (
                f"SELECT value FROM {self.layout.readings} WHERE "
                + " AND ".join(where)
                + " GROUP BY sensor, metric LIMIT 10000"
            )
            rows = self._run(q)
            return interval, [
                SeriesPoint(_ts(r["time"]) or start, _series_name(r), r["value"]) for r in rows
            ]
        interval, step = parse_interval(interval)
        if not self.reads_aggregates(start, end, interval, now=now):
            return interval, self._raw_buckets(where[1:], start, end, interval)
        if windows is None:
            windows = self._stored_windows(site, device)
        points: list[SeriesPoint] = []
        if any(_tumbling_length(w) is not None for w in windows):
            base = [*where[1:]]
            for window in reversed(_usable_windows(windows, step)):
                where_w = [_time_clause(start, end), *base, f'"window" = {_id("window", window)}']
                q = (
                    "SELECT mean(mean) AS mean, min(min) AS min, max(max) AS max"
                    f" FROM {self.layout.aggregates} WHERE "
                    + " AND ".join(where_w)
                    + f" GROUP BY time({interval}), sensor, metric"
                )
                points = _points(self._run(q), start)
                if points:
                    break
        if not points:
            return interval, self._raw_buckets(where[1:], start, end, interval)
        # Raw readings where no aggregates are: before the first bucket (aggregates
        # written since later than the raw data), after the last (windows still open).
        first = min(p.time for p in points)
        after = max(p.time for p in points) + step
        have = {(p.series, p.time) for p in points}
        extra: list[SeriesPoint] = []
        if first > start:
            extra += self._raw_buckets(
                where[1:], start, first - timedelta(microseconds=1), interval
            )
        if after <= end:
            extra += self._raw_buckets(where[1:], after, end, interval)
        points += [p for p in extra if (p.series, p.time) not in have]
        points.sort(key=lambda p: (p.series, p.time))
        return interval, points

    def reads_aggregates(
        self,
        start: datetime,
        end: datetime,
        interval: str | None = None,
        *,
        now: datetime | None = None,
    ) -> bool:
        """Whether :meth:`readings` reads ``[start, end]`` from the stored aggregates.

        It does for a range longer than ``aggregates_after`` (6 h) or starting before the
        raw readings' retention, unless ``interval`` is ``raw``.
        """
        if (interval or choose_interval(end - start)) == "raw":
            return False
        if end - start > self.aggregates_after:
            return True
        kept = self.layout.raw_period
        return kept is not None and start < (now or datetime.now(UTC)) - kept

    def _raw_buckets(
        self, where: list[str], start: datetime, end: datetime, interval: str
    ) -> list[SeriesPoint]:
        if end <= start:
            return []
        q = (
            "SELECT mean(value) AS mean, min(value) AS min, max(value) AS max"
            f" FROM {self.layout.readings} WHERE "
            + " AND ".join([_time_clause(start, end), *where])
            + f" GROUP BY time({interval}), sensor, metric"
        )
        return _points(self._run(q), start)

    def _stored_windows(self, site: str, device: str) -> tuple[str, ...]:
        """Return the ``window`` tag values of a device's stored aggregates."""
        q = (
            f'SHOW TAG VALUES FROM {self.layout.aggregates} WITH KEY = "window"'
            f" WHERE site = {_id('site', site)} AND device = {_id('device', device)}"
        )
        return tuple(sorted({str(r["value"]) for r in self._run(q) if r.get("value")}))

    def aggregates(
        self,
        site: str,
        device: str,
        *,
        start: datetime,
        end: datetime,
        metric: str | None = None,
        windows: tuple[str, ...] = ("1m",),
        interval: str | None = None,
    ) -> tuple[str, list[SeriesPoint]]:
        """Return stored window aggregates over ``[start, end]``, re-bucketed to ``interval``.

        The stored window used is the largest of ``windows`` not longer than the chosen
        interval (so a week reads 1-minute windows, not 10-second ones).
        """
        interval, step = parse_interval(interval or choose_interval(end - start))
        usable = _usable_windows(windows, step)
        base = [
            _time_clause(start, end),
            f"site = {_id('site', site)}",
            f"device = {_id('device', device)}",
        ]
        if metric is not None:
            base.append(f"metric = {_id('metric', metric)}")
        points: list[SeriesPoint] = []
        # Largest stored window first; a smaller one when the larger is not stored.
        for window in reversed(usable):
            where = [*base, f'"window" = {_id("window", window)}']
            q = (
                "SELECT mean(mean) AS mean, min(min) AS min, max(max) AS max"
                f" FROM {self.layout.aggregates} WHERE "
                + " AND ".join(where)
                + f" GROUP BY time({interval}), sensor, metric"
            )
            points = _points(self._run(q), start)
            if points:
                break
        return interval, points

    def expected_band(
        self,
        site: str,
        device: str,
        *,
        start: datetime,
        end: datetime,
        windows: tuple[str, ...] = ("10s", "1m"),
        interval: str | None = None,
    ) -> tuple[str, list[BandPoint]]:
        """Return each series' expected band over ``[start, end]`` (:mod:`~gateway.views.bands`).

        Read from the stored aggregates of the largest window not longer than the
        interval, from :data:`~gateway.views.bands.LOOKBACK` buckets before ``start``.
        """
        interval, step = parse_interval(interval or choose_interval(end - start))
        since = start - step * LOOKBACK
        base = [
            _time_clause(since, end),
            f"site = {_id('site', site)}",
            f"device = {_id('device', device)}",
        ]
        rows: list[dict[str, Any]] = []
        for window in reversed(_usable_windows(windows, step)):
            where = [*base, f'"window" = {_id("window", window)}']
            q = (
                'SELECT mean("mean") AS mean, mean("stddev") AS sd, stddev("mean") AS between'
                f" FROM {self.layout.aggregates} WHERE "
                + " AND ".join(where)
                + f" GROUP BY time({interval}), sensor, metric"
            )
            rows = self._run(q)
            if any(r.get("mean") is not None for r in rows):
                break
        by_series: dict[str, list[Bucket]] = {}
        for r in rows:
            sd, between = r.get("sd") or 0.0, r.get("between") or 0.0
            by_series.setdefault(_series_name(r), []).append(
                Bucket(_ts(r["time"]) or since, r.get("mean"), math.hypot(sd, between))
            )
        points: list[BandPoint] = []
        for name, buckets in sorted(by_series.items()):
            buckets.sort(key=lambda b: b.time)
            points.extend(trailing_band(name, buckets, since=start - step))
        return interval, points


def _usable_windows(windows: tuple[str, ...], step: timedelta) -> list[str]:
    """Tumbling windows not longer than ``step``, shortest first (else the shortest)."""
    lengths = {w: length for w in windows if (length := _tumbling_length(w)) is not None}
    if not lengths:
        raise ViewInputError(f"no tumbling window among {windows!r}")
    usable = sorted((w for w in lengths if lengths[w] <= step), key=lengths.__getitem__)
    return usable or [min(lengths, key=lengths.__getitem__)]


def _tumbling_length(window: str) -> timedelta | None:
    """Length of a tumbling window's name (``1m``); None for a sliding one (``5m/1m``)."""
    if "/" in window:
        return None
    try:
        return parse_duration(window)
    except TimeFormatError:
        return None


def _series_name(row: dict[str, Any]) -> str:
    return f"{row.get('sensor', '')}/{row.get('metric', '')}"


def _points(rows: list[dict[str, Any]], start: datetime) -> list[SeriesPoint]:
    return [
        SeriesPoint(_ts(r["time"]) or start, _series_name(r), r["mean"], r["min"], r["max"])
        for r in rows
        if r.get("mean") is not None
    ]
