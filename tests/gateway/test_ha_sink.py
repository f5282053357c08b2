"""The Home Assistant sink on an in-memory link: configs once per device, latest aggregates."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bytewax.outputs import StatelessSinkPartition

from contract import TopicScheme
from dataflows.columns import AggregateColumns, SeriesNames
from dataflows.shard_output import Announcement
from edge.mqtt import MqttSettings
from gateway.connectors.ha_sink import AGGREGATE_TYPE, HomeAssistantSink, MemoryLink
from gateway.observability.metrics import GatewayMetrics
from gateway.settings import HaDiscoverySettings

T = 1_764_504_000_000_000  # 2025-11-30T12:00:00Z in µs
TOPICS = TopicScheme("sg/v1")


def _names() -> SeriesNames:
    names = SeriesNames()
    names.add("plant", "press-7", "env", "temperature")
    names.add("plant", "press-7", "env", "humidity")
    names.add("plant", "oven-1", "env", "temperature")
    return names


def _closed(
    rows: list[tuple[int, int, int, float]], windows: tuple[str, ...] = ("1m",)
) -> AggregateColumns:
    """Rows of (series, window index, start offset s, mean); count 2, min/max mean -/+ 1."""
    n = len(rows)
    mean = np.asarray([r[3] for r in rows])
    return AggregateColumns(
        series=np.asarray([r[0] for r in rows], np.int32),
        window=np.asarray([r[1] for r in rows], np.int8),
        window_names=windows,
        start_us=np.asarray([T + r[2] * 1_000_000 for r in rows], np.int64),
        count=np.full(n, 2, np.int64),
        mean=mean,
        min=mean - 1,
        max=mean + 1,
        stddev=np.full(n, np.nan),
        first=mean - 1,
        last=mean + 1,
    )


def _sink(
    link: MemoryLink, *, metrics: GatewayMetrics | None = None, **settings: object
) -> StatelessSinkPartition[Announcement]:
    sink = HomeAssistantSink(
        MqttSettings(client_id="gw-ha"),
        TOPICS,
        HaDiscoverySettings(enabled=True, **settings),  # type: ignore[arg-type]
        window="1m",
        metrics=metrics,
        link_factory=lambda _s: link,
    )
    return sink.build("ha", 0, 1)


def test_configs_once_per_device_and_one_per_series() -> None:
    link = MemoryLink()
    part = _sink(link)
    names = _names()
    part.write_batch([Announcement(names, range(0, 2))])
    part.write_batch([Announcement(names, range(2, 3))])
    topics = [t for t, _p, _q, _r in link.published]
    node = "homeassistant/{}/sensorgate_plant_{}"
    assert topics == [
        node.format("binary_sensor", "press-7") + "/alarm/config",
        node.format("sensor", "press-7") + "/active_alarms/config",
        node.format("sensor", "press-7") + "/env_temperature_1m/config",
        node.format("sensor", "press-7") + "/env_humidity_1m/config",
        node.format("binary_sensor", "oven-1") + "/alarm/config",
        node.format("sensor", "oven-1") + "/active_alarms/config",
        node.format("sensor", "oven-1") + "/env_temperature_1m/config",
    ]
    assert all(q == 1 and r for _t, _p, q, r in link.published)
    alarm = json.loads(link.retained[topics[0]])
    assert alarm["state_topic"] == "sg/v1/plant/press-7/alarms/active"
    assert "availability" not in alarm
    mean = json.loads(link.retained[topics[2]])
    assert mean["state_topic"] == "sg/v1/plant/press-7/aggregates/env/temperature"


def test_the_latest_closed_window_of_each_series_is_published_retained() -> None:
    link = MemoryLink()
    metrics = GatewayMetrics()
    part = _sink(link, metrics=metrics)
    names = _names()
    # two windows of series 0 in one batch (a backlog), one of series 2, and a 10 s
    # window that is not the published one
    closed = _closed(
        [(0, 0, 0, 20.0), (2, 0, 0, 30.0), (0, 1, 60, 99.0), (0, 0, 60, 21.5)], ("1m", "10s")
    )
    part.write_batch([Announcement(names, range(0), closed)])
    assert [t for t, *_ in link.published] == [
        "sg/v1/plant/press-7/aggregates/env/temperature",
        "sg/v1/plant/oven-1/aggregates/env/temperature",
    ]
    doc = json.loads(link.retained["sg/v1/plant/press-7/aggregates/env/temperature"])
    assert doc == {
        "type": AGGREGATE_TYPE,
        "site": "plant",
        "device": "press-7",
        "sensor": "env",
        "metric": "temperature",
        "window": "1m",
        "start": "2025-11-30T12:01:00.000Z",
        "end": "2025-11-30T12:02:00.000Z",
        "count": 2,
        "mean": 21.5,
        "min": 20.5,
        "max": 22.5,
        "first": 20.5,
        "last": 22.5,
    }
    assert metrics.ha_messages.labels("aggregate")._value.get() == 2


def test_with_aggregates_off_only_the_alarm_entities_are_published() -> None:
    link = MemoryLink()
    part = _sink(link, aggregates=False)
    names = _names()
    part.write_batch([Announcement(names, range(0, 3), _closed([(0, 0, 0, 20.0)]))])
    topics = [t for t, *_ in link.published]
    assert len(topics) == 4
    assert all(t.endswith(("/alarm/config", "/active_alarms/config")) for t in topics)


def test_an_unacknowledged_message_is_counted_not_raised() -> None:
    link = MemoryLink(acknowledge=False)
    metrics = GatewayMetrics()
    part = _sink(link, metrics=metrics)
    part.write_batch([Announcement(_names(), range(0, 1))])
    assert metrics.ha_unacknowledged._value.get() == 3
    part.close()
    assert link.stopped


def test_a_window_that_is_not_configured_is_refused_at_build() -> None:
    with pytest.raises(ValueError, match="duration"):
        HomeAssistantSink(MqttSettings(), TOPICS, HaDiscoverySettings(), window="soon")
