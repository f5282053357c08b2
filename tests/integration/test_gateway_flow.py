"""The gateway flow end to end: dedupe, windows, late data, workers (real broker + influxd)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from contract import Reading, TelemetryEvent, encode
from edge.mqtt import MqttLink
from gateway.settings import GatewaySettings
from tests.integration.gateway_kit import RunningGateway, gateway_thread
from tests.integration.streams import (
    Published,
    assert_aggregates_equal,
    close_windows,
    in_any_order,
    past_minute,
    publish_series,
    stored_aggregates,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

DEVICES = ["d-1", "d 2", "d,3"]


def _base(minutes_ago: int = 5) -> datetime:
    return past_minute(minutes_ago)


def _wait_for_aggregates(gw: RunningGateway, expected_rows: int) -> list[dict]:  # type: ignore[type-arg]
    q = gw.query
    wait_for(
        lambda: q.scalar(f"SELECT count(mean) FROM {q.layout.aggregates}") >= expected_rows,
        60,
        f"{expected_rows} aggregate rows",
    )
    return q.query(f"SELECT * FROM {q.layout.aggregates}")


def test_duplicates_and_resends_count_once(
    running_gateway: RunningGateway, publisher: MqttLink
) -> None:
    gw = running_gateway
    topics = gw.settings.topics
    published = Published()
    base = _base()
    publish_series(
        publisher, topics, published, site="plant", devices=DEVICES, base=base, seconds=60
    )
    # QoS 1 re-delivery: the very same bytes again; outbox re-send: same sequence, new id.
    tickets = []
    for device, event in published.events[:30]:
        tickets.append(publisher.publish(topics.telemetry("plant", device), encode(event)))
        resent = TelemetryEvent.create(
            site="plant",
            device=device,
            sequence=event.data.sequence,
            readings=event.data.readings,
        )
        tickets.append(publisher.publish(topics.telemetry("plant", device), encode(resent)))
    assert all(t.wait(10) for t in tickets)

    ten = published.expected_aggregates(10)
    minute = published.expected_aggregates(60)
    rows = _wait_for_aggregates(gw, len(ten) + len(minute))
    assert_aggregates_equal(stored_aggregates(rows, "10s"), ten)
    assert_aggregates_equal(stored_aggregates(rows, "1m"), minute)

    readings = gw.query.query(f"SELECT value, device, metric FROM {gw.query.layout.readings}")
    assert len(readings) == len(published.readings)
    assert {(r["device"], r["metric"], r["time"] // 1000): r["value"] for r in readings} == (
        published.readings
    )
    assert gw.metrics.duplicates._value.get() == 60 * 3  # 60 events re-sent x 3 readings
    assert gw.query.scalar(f"SELECT count(value) FROM {gw.query.layout.late_readings}") == 0


def test_late_reading_goes_to_late_output_and_leaves_the_window_alone(
    running_gateway: RunningGateway, publisher: MqttLink
) -> None:
    gw = running_gateway
    topics = gw.settings.topics
    published = Published()
    base = _base()
    publish_series(
        publisher,
        topics,
        published,
        site="plant",
        devices=["late-dev"],
        base=base,
        seconds=30,
        metrics=1,
    )
    first_window = int(base.timestamp()) * 1_000_000
    wait_for(
        lambda: (
            gw.query.scalar(
                f"""SELECT count(mean) FROM {gw.query.layout.aggregates} WHERE "window" = '10s'"""
            )
            >= 3
        ),
        60,
        "the three 10 s windows",
    )
    before = stored_aggregates(gw.query.query(f"SELECT * FROM {gw.query.layout.aggregates}"), "10s")
    straggler = TelemetryEvent.create(
        site="plant",
        device="late-dev",
        sequence=1000,
        readings=[
            Reading(
                sensor="probe",
                metric="m0",
                value=999.0,
                time=base + timedelta(seconds=5, milliseconds=500),
            )
        ],
    )
    assert publisher.publish(topics.telemetry("plant", "late-dev"), encode(straggler)).wait(10)
    wait_for(
        lambda: gw.query.scalar(f"SELECT count(value) FROM {gw.query.layout.late_readings}") == 1,
        30,
        "the late reading in late_readings",
    )
    late = gw.query.query(f"SELECT * FROM {gw.query.layout.late_readings}")[0]
    assert late["value"] == 999.0
    assert late["seq"] == 1000
    assert late["event_id"] == straggler.id
    # Its raw value is stored; the window it missed is exactly as it was.
    assert gw.query.scalar(f"SELECT max(value) FROM {gw.query.layout.readings}") == 999.0
    after = stored_aggregates(gw.query.query(f"SELECT * FROM {gw.query.layout.aggregates}"), "10s")
    assert after[("late-dev", "m0", first_window)] == before[("late-dev", "m0", first_window)]
    assert after == before
    assert_aggregates_equal(after, published.expected_aggregates(10))
    assert gw.metrics.late_readings._value.get() == 1


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_any_number_of_workers_gives_the_aggregates_of_the_data(
    workers: int, gateway_settings: GatewaySettings, publisher: MqttLink
) -> None:
    settings = in_any_order(
        gateway_settings.model_copy(
            update={"mqtt": gateway_settings.mqtt.model_copy(update={"partitions": workers})}
        )
    )
    devices = [f"w{i}" for i in range(8)]
    with gateway_thread(settings, workers=workers) as gw:
        published = Published()
        base = _base()
        publish_series(
            publisher,
            settings.topics,
            published,
            site="plant",
            devices=devices,
            base=base,
            seconds=30,
        )
        expected = published.expected_aggregates(10)
        q = gw.query
        close_windows(publisher, settings, q, published, devices, base + timedelta(seconds=31))
        rows = _wait_for_aggregates(gw, len(expected))
        assert gw.query.scalar(f"SELECT count(value) FROM {gw.query.layout.late_readings}") == 0
        assert_aggregates_equal(stored_aggregates(rows, "10s"), expected)
        # Every reading once, and the closers.
        assert q.scalar(f"SELECT count(value) FROM {q.layout.readings}") == len(
            published.readings
        ) + len(devices)


def test_sliding_windows(gateway_settings: GatewaySettings, publisher: MqttLink) -> None:
    settings = gateway_settings.model_copy(
        update={"stream": gateway_settings.stream.model_copy(update={"windows": ("20s/10s",)})}
    )
    with gateway_thread(settings) as gw:
        published = Published()
        base = _base()
        publish_series(
            publisher,
            settings.topics,
            published,
            site="plant",
            devices=["s1"],
            base=base,
            seconds=40,
            metrics=1,
        )
        # Windows [-10,10), [0,20), [10,30), [20,40), [30,50) relative to base.
        rows = _wait_for_aggregates(gw, 5)
        got = stored_aggregates(rows, "20s/10s")
        start = int(base.timestamp()) * 1_000_000
        counts = {(k[2] - start) // 1_000_000: v["count"] for k, v in got.items()}
        assert counts == {-10: 10, 0: 20, 10: 20, 20: 20, 30: 10}
