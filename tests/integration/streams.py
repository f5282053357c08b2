"""Helpers for integration tests: publish known telemetry, compute the expected results."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from contract import Reading, TelemetryEvent, TopicScheme, encode
from edge.mqtt import MqttLink
from gateway.influx.query import InfluxQL
from gateway.settings import GatewaySettings
from tests.waiting import wait_for

S = 1_000_000


LATENESS_BEYOND_SPAN_S = 120
"""The lateness of :func:`in_any_order`: more than any series a test publishes spans."""


def in_any_order(settings: GatewaySettings) -> GatewaySettings:
    """``settings`` under which no reading of a :func:`publish_series` can be late.

    :func:`publish_series` packs tens of seconds of event time into a burst of a few
    milliseconds. With more than one MQTT partition the shared subscription spreads a
    device's messages over the partitions, and a partition a moment behind another
    delivers a reading many seconds of event time after later ones: beyond 2 s of
    lateness it is late, rightly, and its window misses it. A lateness beyond any
    series' span leaves nothing late whatever the order. Close the windows with
    :func:`publish_closers` once every reading is stored.
    """
    stream = settings.stream.model_copy(update={"allowed_lateness_s": LATENESS_BEYOND_SPAN_S})
    return settings.model_copy(update={"stream": stream})


def publish_closers(
    link: MqttLink, topics: TopicScheme, *, site: str, devices: list[str], at: datetime
) -> None:
    """Publish one reading per device dated ``at`` (sensor ``probe``, sequence 10**6).

    It moves each device's event time to ``at`` and so closes, by event time, every
    window ending at least the allowed lateness before it; left to the quiet period a
    window closes only after about 2 x quiet_s of silence (``eventclock.FleetClock``).
    Publish it once everything before is stored, or it may overtake a reading of
    another partition and make it late.
    """
    for device in devices:
        event = TelemetryEvent.create(
            site=site,
            device=device,
            sequence=1_000_000,
            readings=[Reading(sensor="probe", metric="m0", value=0.0, time=at)],
        )
        assert link.publish(topics.telemetry(site, device), encode(event)).wait(10)


def close_windows(
    link: MqttLink,
    settings: GatewaySettings,
    query: InfluxQL,
    published: Published,
    devices: list[str],
    end: datetime,
) -> None:
    """Once every published reading is stored, close the windows before ``end``.

    Waiting first means no closer can overtake a reading (:func:`publish_closers`).
    """
    wait_for(
        lambda: (
            query.scalar(f"SELECT count(value) FROM {query.layout.readings}")
            >= len(published.readings)
        ),
        60,
        "every reading stored",
    )
    lateness = timedelta(seconds=settings.stream.allowed_lateness_s)
    publish_closers(link, settings.topics, site="plant", devices=devices, at=end + lateness)


def past_minute(minutes_ago: int = 5) -> datetime:
    """The start of the minute ``minutes_ago`` minutes before now (UTC)."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=minutes_ago)


@dataclass
class Published:
    """What a test sent: every unique reading, for checking what was stored."""

    readings: dict[tuple[str, str, int], float] = field(default_factory=dict)
    """(device, metric, time in µs) -> value."""
    events: list[tuple[str, TelemetryEvent]] = field(default_factory=list)

    def expected_aggregates(
        self, window_s: int, only: set[str] | None = None
    ) -> dict[tuple[str, str, int], dict[str, float]]:
        """(device, metric, window start in µs) -> count/mean/min/max/stddev/first/last."""
        series: dict[tuple[str, str, int], list[tuple[int, float]]] = defaultdict(list)
        for (device, metric, t), value in self.readings.items():
            if only is not None and device not in only:
                continue
            start = t - t % (window_s * S)
            series[(device, metric, start)].append((t, value))
        out = {}
        for key, points in series.items():
            points.sort()
            values = [v for _, v in points]
            out[key] = {
                "count": len(values),
                "mean": statistics.fmean(values),
                "min": min(values),
                "max": max(values),
                "stddev": statistics.stdev(values) if len(values) > 1 else None,
                "first": values[0],
                "last": values[-1],
            }
        return out


def make_event(
    site: str, device: str, seq: int, start: datetime, metrics: int, value_of: float
) -> TelemetryEvent:
    """One event: ``metrics`` readings at ``start``."""
    return TelemetryEvent.create(
        site=site,
        device=device,
        sequence=seq,
        readings=[
            Reading(sensor="probe", metric=f"m{j}", value=value_of + j, time=start)
            for j in range(metrics)
        ],
    )


def publish_series(
    link: MqttLink,
    topics: TopicScheme,
    published: Published,
    *,
    site: str,
    devices: list[str],
    base: datetime,
    seconds: int,
    metrics: int = 3,
    first_seq: int = 0,
) -> None:
    """Publish one event per device per second of event time from ``base``; wait for acks."""
    tickets = []
    for i in range(seconds):
        at = base + timedelta(seconds=i)
        for d, device in enumerate(devices):
            value = round(math.sin(i / 7 + d) * 100 + i, 3)
            event = make_event(site, device, first_seq + i, at, metrics, value)
            published.events.append((device, event))
            for r in event.data.readings:
                published.readings[(device, r.metric, _us(r.time))] = r.value  # type: ignore[assignment]
            tickets.append(link.publish(topics.telemetry(site, device), encode(event)))
    assert all(t.wait(30) for t in tickets), "the broker did not acknowledge every publish"


def _us(when: datetime) -> int:
    return int(when.timestamp()) * S + when.microsecond


def stored_aggregates(
    rows: list[dict], window: str
) -> dict[tuple[str, str, int], dict[str, float]]:  # type: ignore[type-arg]
    """Aggregates rows from InfluxDB keyed like :meth:`Published.expected_aggregates`."""
    out = {}
    for r in rows:
        if r["window"] != window:
            continue
        # .get: a field no stored row has yet is no column at all in InfluxQL's answer;
        # the comparison then names the missing value instead of a bare KeyError.
        out[(r["device"], r["metric"], r["time"] // 1000)] = {
            k: r.get(k) for k in ("count", "mean", "min", "max", "stddev", "first", "last")
        }
    return out


def assert_aggregates_equal(got: dict, expected: dict) -> None:  # type: ignore[type-arg]
    """Exact counts and first/last/min/max; means and stddevs to 1e-9 relative."""
    assert got.keys() == expected.keys(), (
        f"missing windows: {sorted(expected.keys() - got.keys())[:5]},"
        f" unexpected: {sorted(got.keys() - expected.keys())[:5]}"
    )
    for key, want in expected.items():
        have = got[key]
        for name in ("count", "min", "max", "first", "last"):
            assert have[name] == want[name], (key, name, have, want)
        for name in ("mean", "stddev"):
            if want[name] is None:
                assert have[name] is None, (key, name, have)
            else:
                assert math.isclose(have[name], want[name], rel_tol=1e-9, abs_tol=1e-9), (
                    key,
                    name,
                    have,
                    want,
                )
