"""InfluxQL views over the stored data (schema in ARCHITECTURE.md).

Values a user gives are validated and quoted by :mod:`~gateway.views.clauses`
(:class:`~gateway.views.clauses.ViewInputError` before any statement is built);
identifiers (measurements, fields, tag keys) come only from fixed lists. Results are
the rows of :mod:`~gateway.views.rows`.

Measurements are named through a :class:`~gateway.influx.layout.StorageLayout`
(``"aggregates"."aggregates"`` with retention policies), taken from the runner when it
has one (:class:`~gateway.influx.query.InfluxQL` does). Raw readings may expire (30
days by default): :meth:`Views.readings` reads the stored aggregates for a long range
(more than :data:`AGGREGATES_AFTER`, or reaching past the raw retention) and the raw
readings only where no aggregates exist.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from contract.alarms import AlarmState
from contract.errors import StorageError
from gateway.influx.layout import StorageLayout
from gateway.views.bands import LOOKBACK, BandPoint, Bucket, trailing_band
from gateway.views.clauses import (
    check_limit,
    choose_interval,
    from_ns,
    parse_interval,
    tag_value,
    time_clause,
    tumbling_length,
    usable_windows,
)
from gateway.views.rows import (
    AlarmFilter,
    AlarmRow,
    DeviceStatus,
    SeriesPoint,
    points_of,
    series_name,
)

__all__ = ["AGGREGATES_AFTER", "QueryRunner", "Views"]

Rows = list[dict[str, Any]]


class QueryRunner(Protocol):
    """What the views need from an InfluxQL client (``InfluxQL`` or a fake).

    A runner may also carry a ``layout`` (:class:`~gateway.influx.layout.StorageLayout`)
    saying where each measurement is stored; :class:`Views` uses it when given none.
    """

    def query(self, q: str) -> Rows:
        """Run one statement and return its rows."""
        ...


AGGREGATES_AFTER = timedelta(hours=6)
"""A range longer than this is charted from the stored aggregates, not the raw readings."""
_BUCKETS = "mean(mean) AS mean, min(min) AS min, max(max) AS max"
"""A chart bucket of stored aggregates."""


def _device(site: str, device: str) -> list[str]:
    return [f"site = {tag_value('site', site)}", f"device = {tag_value('device', device)}"]


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

    def _run(self, q: str) -> Rows:
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
        where = [time_clause(start, end), *(flt or AlarmFilter()).clauses()]
        q = (
            f"SELECT * FROM {self.layout.alarms} WHERE "
            + " AND ".join(where)
            + f" ORDER BY time DESC LIMIT {check_limit(limit)}"
        )
        return [AlarmRow.from_row(r) for r in self._run(q)]

    # -- fleet ------------------------------------------------------------------------
    def fleet(self, *, site: str | None = None, now: datetime | None = None) -> list[DeviceStatus]:
        """Every device seen within the fleet lookback, with its last values."""
        now = now or datetime.now(UTC)
        where = [f"time > now() - {int(self.fleet_lookback.total_seconds())}s"]
        if site is not None:
            where.append(f"site = {tag_value('site', site)}")
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
            f" AND site = {tag_value('site', site)} AND device = {tag_value('device', device)}"
            " GROUP BY site, device, sensor, metric"
        )
        found = self._fold_devices(self._run(q), now)
        return found[0] if found else None

    def _fold_devices(self, rows: Rows, now: datetime) -> list[DeviceStatus]:
        seen: dict[tuple[str, str], tuple[datetime, dict[str, float]]] = {}
        for row in rows:
            key = (row.get("site", ""), row.get("device", ""))
            when = from_ns(row["time"]) or now
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
        where = [time_clause(start, end), *_device(site, device)]
        if metric is not None:
            where.append(f"metric = {tag_value('metric', metric)}")
        if sensor is not None:
            where.append(f"sensor = {tag_value('sensor', sensor)}")
        interval = interval or choose_interval(end - start)
        if interval == "raw":
            q = (
                f"SELECT value FROM {self.layout.readings} WHERE "
                + " AND ".join(where)
                + " GROUP BY sensor, metric LIMIT 10000"
            )
            return interval, [
                SeriesPoint(from_ns(r["time"]) or start, series_name(r), r["value"])
                for r in self._run(q)
            ]
        interval, step = parse_interval(interval)
        points: list[SeriesPoint] = []
        if self.reads_aggregates(start, end, interval, now=now):
            if windows is None:
                windows = self._stored_windows(site, device)
            if any(tumbling_length(w) is not None for w in windows):
                rows = self._largest_window(_BUCKETS, where, windows, step, interval)
                points = points_of(rows, start)
        if not points:
            return interval, self._raw_buckets(where[1:], start, end, interval)
        return interval, self._with_raw_edges(points, where[1:], start, end, interval, step)

    def _with_raw_edges(
        self,
        points: list[SeriesPoint],
        where: list[str],
        start: datetime,
        end: datetime,
        interval: str,
        step: timedelta,
    ) -> list[SeriesPoint]:
        """Add raw buckets where no aggregates are, and sort by series and time.

        Before the first bucket (aggregates written since later than the raw data) and
        after the last (windows still open).
        """
        first = min(p.time for p in points)
        after = max(p.time for p in points) + step
        have = {(p.series, p.time) for p in points}
        extra: list[SeriesPoint] = []
        if first > start:
            extra += self._raw_buckets(where, start, first - timedelta(microseconds=1), interval)
        if after <= end:
            extra += self._raw_buckets(where, after, end, interval)
        points += [p for p in extra if (p.series, p.time) not in have]
        points.sort(key=lambda p: (p.series, p.time))
        return points

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
            + " AND ".join([time_clause(start, end), *where])
            + f" GROUP BY time({interval}), sensor, metric"
        )
        return points_of(self._run(q), start)

    def _stored_windows(self, site: str, device: str) -> tuple[str, ...]:
        """Return the ``window`` tag values of a device's stored aggregates."""
        q = (
            f'SHOW TAG VALUES FROM {self.layout.aggregates} WITH KEY = "window"'
            f" WHERE site = {tag_value('site', site)} AND device = {tag_value('device', device)}"
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
        usable_windows(windows, step)  # no tumbling window: refused before any query
        base = [time_clause(start, end), *_device(site, device)]
        if metric is not None:
            base.append(f"metric = {tag_value('metric', metric)}")
        rows = self._largest_window(_BUCKETS, base, windows, step, interval)
        return interval, points_of(rows, start)

    def _largest_window(
        self,
        select: str,
        where: list[str],
        windows: tuple[str, ...],
        step: timedelta,
        interval: str,
    ) -> Rows:
        """Return ``select`` over the stored aggregates in buckets of ``interval``.

        From the largest of ``windows`` not longer than ``step`` that holds data; a
        smaller one when the larger is not stored.
        """
        rows: Rows = []
        for window in reversed(usable_windows(windows, step)):
            where_w = [*where, f'"window" = {tag_value("window", window)}']
            q = (
                f"SELECT {select} FROM {self.layout.aggregates} WHERE "
                + " AND ".join(where_w)
                + f" GROUP BY time({interval}), sensor, metric"
            )
            rows = self._run(q)
            if any(r.get("mean") is not None for r in rows):
                break
        return rows

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
        select = 'mean("mean") AS mean, mean("stddev") AS sd, stddev("mean") AS between'
        where = [time_clause(since, end), *_device(site, device)]
        rows = self._largest_window(select, where, windows, step, interval)
        by_series: dict[str, list[Bucket]] = {}
        for r in rows:
            sd, between = r.get("sd") or 0.0, r.get("between") or 0.0
            by_series.setdefault(series_name(r), []).append(
                Bucket(from_ns(r["time"]) or since, r.get("mean"), math.hypot(sd, between))
            )
        points: list[BandPoint] = []
        for name, buckets in sorted(by_series.items()):
            buckets.sort(key=lambda b: b.time)
            points.extend(trailing_band(name, buckets, since=start - step))
        return interval, points
