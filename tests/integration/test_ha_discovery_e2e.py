"""Home Assistant discovery of the gateway's alarms and aggregates, through the real broker.

With ``ha_discovery`` on, telemetry of one device makes the gateway publish, retained,
the discovery configs of that device (alarm binary sensor, active alarm count, the
10 s mean of its series); the binary sensor's state topic carries the retained active
alarm summary; a closed window's aggregate arrives with the values computed from the
readings. The configs are read back by the project's own Home Assistant adapter, and a
restarted gateway publishes the very same configs again.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract import Reading, TelemetryEvent, encode
from dataflows.adapters import AdapterSet, parse_adapters
from edge.mqtt import MqttLink, MqttSettings
from gateway.localstack.services import ServiceEndpoints
from gateway.settings import GatewaySettings
from tests.integration.gateway_kit import gateway_thread
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

RULES = """
version = 1

[[rules]]
id = "too-hot"
kind = "threshold"
metric = "temperature"
above = 30
clear = 25
"""


class Retained:
    """Subscribes to some filters and keeps every message, and the last one per topic."""

    def __init__(self, services: ServiceEndpoints, filters: list[str], client_id: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.last: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._filters = filters
        settings = MqttSettings(
            host=services.mqtt_host, port=services.mqtt_port, client_id=client_id
        )
        self.link = MqttLink(settings, on_connect=self._subscribe, on_message=self._keep)
        self.link.client.on_subscribe = lambda *_a: self._subscribed.set()

    def _subscribe(self, link: MqttLink) -> None:
        link.client.subscribe([(f, 1) for f in self._filters])

    def _keep(self, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.last[msg.topic] = bytes(msg.payload)

    def __enter__(self) -> Retained:
        self.link.start()
        assert self._subscribed.wait(10), "no SUBACK from the broker"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.link.stop()

    def json(self, topic: str) -> dict[str, Any] | None:
        with self._lock:
            payload = self.last.get(topic)
        return None if not payload else dict(json.loads(payload))

    def docs(self, topic: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(json.loads(p)) for t, p, _r in self.messages if t == topic and p]

    def count(self, topic: str) -> int:
        with self._lock:
            return sum(1 for t, _p, _r in self.messages if t == topic)


def _event(site: str, device: str, seq: int, at: datetime, value: float) -> bytes:
    reading = Reading(sensor="t", metric="temperature", value=value, time=at)
    return encode(TelemetryEvent.create(site=site, device=device, sequence=seq, readings=[reading]))


def test_home_assistant_sees_the_gateway_s_alarms_and_aggregates(
    gateway_settings: GatewaySettings,
    publisher: MqttLink,
    services: ServiceEndpoints,
    unique: str,
    tmp_path: Path,
) -> None:
    site, device = "plant", f"press-{unique[:6]}"
    discovery = f"ha{unique}"
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    settings = gateway_settings.model_copy(
        update={
            "rules_file": rules,
            "ha_discovery": gateway_settings.ha_discovery.model_copy(
                update={"enabled": True, "discovery_prefix": discovery, "window": "10s"}
            ),
        }
    )
    topics = settings.topics
    node = f"sensorgate_{site}_{device}"
    configs = [
        f"{discovery}/binary_sensor/{node}/alarm/config",
        f"{discovery}/sensor/{node}/active_alarms/config",
        f"{discovery}/sensor/{node}/t_temperature_10s/config",
    ]
    active = topics.alarms_active(site, device)
    aggregate = topics.aggregates(site, device, "t", "temperature")
    # A 10 s window in the recent past: three readings in it (one above the threshold),
    # then one 25 s later that moves the device's watermark past the window's end.
    now = datetime.now(UTC)
    base = now.replace(second=now.second - now.second % 10, microsecond=0) - timedelta(seconds=60)
    start = base.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def closed_window() -> dict[str, Any] | None:
        # Later windows close too (by the quiet fleet's clock): find this one.
        return next((d for d in live.docs(aggregate) if d["start"] == start), None)

    values = [(0, 20.0), (3, 22.0), (6, 35.0), (25, 32.0)]
    telemetry = topics.telemetry(site, device)
    filters = [f"{discovery}/#", active, aggregate]
    with Retained(services, filters, f"ha-live-{unique}") as live:
        with gateway_thread(settings):
            for seq, (offset, value) in enumerate(values):
                at = base + timedelta(seconds=offset)
                assert publisher.publish(telemetry, _event(site, device, seq, at, value)).wait(10)
            wait_for(lambda: all(live.json(t) for t in configs), 60, "the discovery configs")
            wait_for(lambda: closed_window() is not None, 60, "the 10 s aggregate")
            wait_for(lambda: live.json(active) is not None, 60, "the active alarm summary")
        first = {t: live.last[t] for t in configs}

        # The binary sensor reads the retained summary, which lists the raised alarm.
        alarm = json.loads(first[configs[0]])
        assert alarm["device_class"] == "problem"
        assert alarm["state_topic"] == active
        summary = live.json(active)
        assert summary is not None
        assert summary["type"] == "io.sensorgate.alarm.active.v1"
        assert [a["rule"] for a in summary["alarms"]] == ["too-hot"]
        # The aggregate of the window that closed, computed from its three readings.
        doc = closed_window()
        assert doc is not None
        assert doc["type"] == "io.sensorgate.aggregate.v1"
        assert (doc["site"], doc["device"], doc["sensor"], doc["metric"], doc["window"]) == (
            site,
            device,
            "t",
            "temperature",
            "10s",
        )
        assert (doc["count"], doc["min"], doc["max"]) == (3, 20.0, 35.0)
        assert doc["mean"] == pytest.approx((20.0 + 22.0 + 35.0) / 3)
        assert (doc["first"], doc["last"]) == (20.0, 35.0)
        mean_config = json.loads(first[configs[2]])
        assert mean_config["state_topic"] == aggregate

        # Restarted (no recovery: the device is new to it again), the gateway publishes
        # the same configs once more; Home Assistant sees no change.
        before = {t: live.count(t) for t in configs}
        with gateway_thread(settings):
            at = base + timedelta(seconds=26)
            assert publisher.publish(telemetry, _event(site, device, 99, at, 31.0)).wait(10)
            wait_for(
                lambda: all(live.count(t) > before[t] for t in configs),
                60,
                "the configs again after the restart",
            )
        assert {t: live.last[t] for t in configs} == first

    # They are retained: a client that subscribes now gets them, and the aggregate.
    with Retained(services, filters, f"ha-late-{unique}") as late:
        wait_for(lambda: all(late.json(t) for t in [*configs, aggregate, active]), 10, "retained")
        assert all(r for t, _p, r in late.messages if t in configs)
        kept = dict(late.last)

    # The project's own Home Assistant adapter reads the configs back: it learns the
    # aggregate sensor and reads the gateway's aggregate message as its mean; the alarm
    # entities' templates are Home Assistant Jinja beyond the adapter's subset, refused
    # with the template named (docs/adapters.md).
    adapters = AdapterSet(
        parse_adapters(
            {
                "adapter": [
                    {
                        "name": "ha",
                        "kind": "homeassistant",
                        "topic": discovery,
                        "state_filters": [f"{topics.prefix}/+/+/aggregates/#"],
                        "site": site,
                    }
                ]
            }
        )
    )
    received = time.time_ns() // 1000
    learned = adapters.adapt(configs[2], kept[configs[2]], received)
    assert learned is not None
    assert learned.errors == [], learned
    for topic in configs[:2]:
        refused = adapters.adapt(topic, kept[topic], received)
        assert refused is not None
        assert refused.errors
        assert "value_template" in refused.errors[0].text
    state = adapters.adapt(aggregate, kept[aggregate], received)
    assert state is not None
    assert state.errors == []
    [reading] = [v for tel in state.telemetry for v in tel.value]
    assert reading == pytest.approx(json.loads(kept[aggregate])["mean"])

    # Leave the broker clean for later tests.
    for topic in [*configs, aggregate, active]:
        assert publisher.publish(topic, b"", retain=True).wait(10)
