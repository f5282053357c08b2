"""``sensorgate alerts --watch`` against the real broker, run as a script runs it.

The retained summaries come first (the current state), then each event as it is
published; ``--json`` lines are read from the subprocess. (It replaces the earlier
watch that polled InfluxDB: the alarms travel on MQTT.)
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract import TopicScheme
from contract.alarms import (
    AlarmAcknowledgedEvent,
    AlarmClearedEvent,
    AlarmData,
    AlarmRaisedEvent,
    AlarmUpdatedEvent,
    encode_alarm,
)
from edge.mqtt import MqttLink, MqttSettings
from gateway.connectors.alarm_summary import ACTIVE_TYPE, active_topic
from gateway.localstack.services import ServiceEndpoints

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
T0 = datetime.now(UTC) - timedelta(minutes=5)


class Lines:
    """A subprocess's stdout, line by line, with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._q: queue.Queue[str | None] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                self._q.put(line)
            self._q.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def next(self, timeout: float = 30) -> str:
        try:
            line = self._q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout} s") from None
        assert line is not None, "the command ended"
        return line

    def json(self, timeout: float = 30) -> dict[str, Any]:
        return dict(json.loads(self.next(timeout)))


def _alarm(
    alarm_id: str, device: str, severity: str, state: str = "active", **kw: Any
) -> dict[str, Any]:
    return {
        "alarm_id": alarm_id, "site": "plant", "device": device, "sensor": "env",
        "metric": "temperature", "rule": "hot", "kind": "threshold", "severity": severity,
        "state": state, "value": 95.0, "threshold": 40.0, "message": f"{alarm_id} too hot",
        "event_time": T0, "raised_at": T0, **kw,
    }  # fmt: skip


def _summary(device: str, alarms: list[dict[str, Any]]) -> bytes:
    doc = {
        "type": ACTIVE_TYPE,
        "site": "plant",
        "device": device,
        "alarms": [
            AlarmData.model_validate(a).model_dump(mode="json", exclude_none=True) for a in alarms
        ],
    }
    return json.dumps(doc).encode()


@pytest.fixture
def broker(services: ServiceEndpoints, topics: TopicScheme) -> Iterator[MqttLink]:
    with MqttLink(MqttSettings(host=services.mqtt_host, port=services.mqtt_port)) as link:
        yield link
        # Retained messages outlive the test: clear ours.
        for device in ("pump-1", "pump-2", "pump-3"):
            link.publish(active_topic(topics, "plant", device), b"", retain=True).wait(5)


def _watch(
    services: ServiceEndpoints, topics: TopicScheme, *args: str, **env: str
) -> subprocess.Popen[str]:
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SENSORGATE_")},
        "PYTHONPATH": str(ROOT),
        "SENSORGATE_MQTT__HOST": services.mqtt_host,
        "SENSORGATE_MQTT__PORT": str(services.mqtt_port),
        "SENSORGATE_TOPIC_PREFIX": topics.prefix,
        "COLUMNS": "240",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "alerts", "--watch", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.terminate()
    try:
        return proc.wait(30)
    finally:
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_watch_prints_the_retained_state_then_live_events(
    services: ServiceEndpoints, topics: TopicScheme, broker: MqttLink
) -> None:
    broker.publish(
        active_topic(topics, "plant", "pump-1"),
        _summary("pump-1", [_alarm("w1", "pump-1", "warning"), _alarm("c1", "pump-1", "critical")]),
        retain=True,
    ).wait(5)
    broker.publish(
        active_topic(topics, "plant", "pump-2"), _summary("pump-2", []), retain=True
    ).wait(5)

    proc = _watch(services, topics, "--json")
    try:
        out = Lines(proc)
        first, second, synced = out.json(), out.json(), out.json()
        assert [first["event"], second["event"]] == ["active", "active"]
        assert [first["alarm_id"], second["alarm_id"]] == ["c1", "w1"]  # most severe first
        assert first["time"].endswith("Z")
        assert synced == {"event": "synced", "active": 2}

        now = datetime.now(UTC)
        live = _alarm("n1", "pump-3", "major", event_time=now, raised_at=now)
        topic = topics.alarms("plant", "pump-3")
        raised = AlarmRaisedEvent.create(**live)
        broker.publish(topic, encode_alarm(raised)).wait(5)
        broker.publish(topic, encode_alarm(raised)).wait(5)  # a re-delivery: printed once
        later = now + timedelta(seconds=1)
        updated = AlarmUpdatedEvent.create(**{**live, "severity": "critical", "event_time": later})
        broker.publish(topic, encode_alarm(updated)).wait(5)
        acked = AlarmAcknowledgedEvent.create(
            **{**live, "state": "acknowledged", "event_time": now + timedelta(seconds=2)},
            acknowledged_by="op",
            acknowledged_at=now,
        )
        broker.publish(topic, encode_alarm(acked)).wait(5)
        cleared = AlarmClearedEvent.create(
            **{**live, "state": "cleared", "event_time": now + timedelta(seconds=3)}
        )
        broker.publish(topic, encode_alarm(cleared)).wait(5)

        events = [out.json() for _ in range(4)]
        assert [e["event"] for e in events] == ["raised", "updated", "acknowledged", "cleared"]
        assert {e["alarm_id"] for e in events} == {"n1"}
        assert events[0]["event_id"] == str(raised.id)
        assert events[1]["severity"] == "critical"
        assert events[2]["acknowledged_by"] == "op"
        assert events[3]["state"] == "cleared"
    finally:
        assert _stop(proc) == 0


def test_watch_filters_and_colours(
    services: ServiceEndpoints, topics: TopicScheme, broker: MqttLink
) -> None:
    broker.publish(
        active_topic(topics, "plant", "pump-1"),
        _summary("pump-1", [_alarm("w1", "pump-1", "warning"), _alarm("c1", "pump-1", "critical")]),
        retain=True,
    ).wait(5)
    proc = _watch(services, topics, "--json", "--severity", "critical")
    try:
        out = Lines(proc)
        assert out.json()["alarm_id"] == "c1"
        assert out.json() == {"event": "synced", "active": 1}
    finally:
        assert _stop(proc) == 0

    colour = re.compile(r"\x1b\[[0-9;]*3[0-7]m")
    for env, coloured in (({}, False), ({"FORCE_COLOR": "1"}, True),
                          ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False)):  # fmt: skip
        proc = _watch(services, topics, **env)
        try:
            out = Lines(proc)
            table = "".join(out.next() for _ in range(3))  # title and the table's top
            while "c1 too hot" not in table:
                table += out.next()
            assert bool(colour.search(table)) is coloured, (env, table)
        finally:
            assert _stop(proc) == 0


def test_watch_refuses_history_options(services: ServiceEndpoints, topics: TopicScheme) -> None:
    proc = _watch(services, topics, "--history")
    try:
        assert proc.wait(30) == 2
        assert proc.stderr is not None
        assert "--watch shows live events" in proc.stderr.read()
    finally:
        _stop(proc)
