"""Walking skeleton: valid telemetry lands in InfluxDB, everything else is a dead letter."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime

import pytest

from contract import DeadLetterEvent, Reading, TelemetryEvent, decode, encode
from edge.mqtt import MqttLink, MqttSettings
from tests.integration.conftest import RunningGateway, wait_for

pytestmark = pytest.mark.integration

N_EVENTS = 200
READINGS_PER_EVENT = 10
DEVICES = ["pump 1", "valve,2", "tank=3", "caf\u00e9 \u2603", 'q"uote', "back\\slash"]


def _malformed(topics, now: datetime) -> list[tuple[str, bytes, str]]:  # type: ignore[no-untyped-def]
    good = TelemetryEvent.create(
        site="plant",
        device="pump 1",
        sequence=10_000,
        readings=[Reading(sensor="s", metric="m", value=1.0, time=now)],
    )
    doc = json.loads(encode(good))
    bad_schema = {**doc, "data": {**doc["data"], "sequence": -1}}
    v2 = {**doc, "type": "io.sensorgate.telemetry.reported.v2"}
    return [
        (topics.telemetry("plant", "pump 1"), b"\x00\x01 not json {", "not_json"),
        (topics.telemetry("plant", "pump 1"), json.dumps(bad_schema).encode(), "schema_violation"),
        (topics.telemetry("plant", "pump 1"), json.dumps(v2).encode(), "unknown_major_version"),
        (topics.telemetry("plant", "valve,2"), encode(good), "topic_mismatch"),
    ]


def test_valid_readings_stored_and_malformed_become_dead_letters(
    running_gateway: RunningGateway,
) -> None:
    settings = running_gateway.settings
    topics = settings.topics
    now = datetime.now(UTC).replace(microsecond=0)
    letters: list[DeadLetterEvent] = []
    got_letters = threading.Event()

    def on_letter(msg) -> None:  # type: ignore[no-untyped-def]
        event = decode(msg.payload)
        assert isinstance(event, DeadLetterEvent)
        letters.append(event)
        if len(letters) >= 4:
            got_letters.set()

    watcher = MqttLink(
        MqttSettings(host=settings.mqtt.host, port=settings.mqtt.port),
        on_message=on_letter,
        on_connect=lambda link: link.subscribe(topics.deadletter, qos=1),
    )
    watcher.start()
    publisher = MqttLink(MqttSettings(host=settings.mqtt.host, port=settings.mqtt.port))
    publisher.start()
    try:
        expected: dict[tuple[str, str, int], float] = {}
        tickets = []
        for i in range(N_EVENTS):
            device = DEVICES[i % len(DEVICES)]
            readings = []
            for j in range(READINGS_PER_EVENT):
                value = i * 1000 + j + 0.25
                readings.append(
                    Reading(
                        sensor="probe", metric=f"m{j}", value=value, time=now.replace(microsecond=i)
                    )
                )
                expected[(device, f"m{j}", i)] = value
            event = TelemetryEvent.create(
                site="plant", device=device, sequence=i, readings=readings
            )
            tickets.append(publisher.publish(topics.telemetry("plant", device), encode(event)))
        malformed = _malformed(topics, now)
        for topic, payload, _ in malformed:
            tickets.append(publisher.publish(topic, payload))
        assert all(t.wait(10) for t in tickets)

        q = running_gateway.query
        total = N_EVENTS * READINGS_PER_EVENT
        wait_for(
            lambda: q.scalar(f"SELECT count(value) FROM {q.layout.readings}") >= total,
            60,
            f"{total} readings in InfluxDB",
        )
        wait_for(
            lambda: q.scalar(f"SELECT count(size) FROM {q.layout.deadletters}") >= len(malformed),
            30,
            "the dead letters in InfluxDB",
        )
        assert got_letters.wait(30), f"only {len(letters)} dead letters on MQTT"

        # Exactly what was published: every reading, with its tags and value, once. Raw
        # points carry one field (value); event i is told apart by its microsecond.
        rows = q.query(f"SELECT value, device, metric, sensor, site FROM {q.layout.readings}")
        assert len(rows) == total
        stored = {(r["device"], r["metric"], r["time"] // 1000 % 10**6): r["value"] for r in rows}
        assert stored == expected
        assert {r["site"] for r in rows} == {"plant"}

        dead = q.query(f"SELECT reason, topic, payload, error, size FROM {q.layout.deadletters}")
        assert sorted(r["reason"] for r in dead) == sorted(m[2] for m in malformed)
        by_reason = {r["reason"]: r for r in dead}
        for topic, payload, reason in malformed:
            row = by_reason[reason]
            assert base64.b64decode(row["payload"]) == payload
            assert row["topic"] == topic
            assert row["size"] == len(payload)
            assert row["error"]
        assert sorted(d.data.reason.value for d in letters) == sorted(m[2] for m in malformed)
        assert {d.data.payload for d in letters} == {m[1] for m in malformed}
    finally:
        publisher.stop()
        watcher.stop()
