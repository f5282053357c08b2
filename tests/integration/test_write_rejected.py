"""A point InfluxDB refuses becomes a write_rejected dead letter; its neighbours are stored."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from contract import DeadLetterEvent, Reading, TelemetryEvent, decode, encode
from edge.mqtt import MqttLink, MqttSettings
from gateway.influx.lineprotocol import to_ns
from gateway.influx.writer import V1Writer
from tests.integration.conftest import RunningGateway, wait_for

pytestmark = pytest.mark.integration


def test_a_refused_reading_is_dead_lettered_and_the_rest_stored(
    running_gateway: RunningGateway,
) -> None:
    settings = running_gateway.settings
    topics = settings.topics
    now = datetime.now(UTC).replace(microsecond=0)
    # A float "fault" field in this shard makes every string fault line a type
    # conflict: influxd 1.x refuses those points (400, partial write) and keeps the rest.
    seed = V1Writer(settings.influx)
    seed.write([f"readings,device=seed,metric=x,sensor=s,site=plant fault=1.0 {to_ns(now)}"])
    seed.close()

    letters: list[DeadLetterEvent] = []
    got = threading.Event()

    def on_letter(msg) -> None:  # type: ignore[no-untyped-def]
        event = decode(msg.payload)
        assert isinstance(event, DeadLetterEvent)
        letters.append(event)
        got.set()

    watcher = MqttLink(
        MqttSettings(host=settings.mqtt.host, port=settings.mqtt.port),
        on_message=on_letter,
        on_connect=lambda link: link.subscribe(topics.deadletter, qos=1),
    )
    watcher.start()
    publisher = MqttLink(MqttSettings(host=settings.mqtt.host, port=settings.mqtt.port))
    publisher.start()
    try:
        readings = [
            Reading(sensor="probe", metric=f"m{j}", value=j + 0.5, time=now) for j in range(3)
        ] + [Reading(sensor="probe", metric="health", fault="sensor unplugged", time=now)]
        event = TelemetryEvent.create(site="plant", device="d1", sequence=1, readings=readings)
        assert publisher.publish(topics.telemetry("plant", "d1"), encode(event)).wait(10)

        q = running_gateway.query
        wait_for(
            lambda: q.scalar(f"SELECT count(size) FROM {q.layout.deadletters}") >= 1,
            30,
            "the dead letter",
        )
        assert got.wait(30), "no dead letter on MQTT"
        rows = q.query(f"SELECT value, metric FROM {q.layout.readings} WHERE device = 'd1'")
        assert sorted((r["metric"], r["value"]) for r in rows) == [
            ("m0", 0.5),
            ("m1", 1.5),
            ("m2", 2.5),
        ]
        [stored] = q.query(f"SELECT reason, topic, payload, error FROM {q.layout.deadletters}")
        [letter] = letters
        assert letter.data.reason.value == stored["reason"] == "write_rejected"
        assert letter.data.topic == stored["topic"] == "influxdb/readings"
        line = letter.data.payload.decode()
        assert line.startswith("readings,device=d1,metric=health,")
        assert 'fault="sensor unplugged"' in line
        assert "conflict" in letter.data.error
        assert stored["error"] == letter.data.error
    finally:
        publisher.stop()
        watcher.stop()
