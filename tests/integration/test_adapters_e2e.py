"""Foreign dialects through the real broker and gateway into influxd, no edge agent.

Each family's messages are rendered by the simulator's dialect renderers (the same the
``sensorgate simulate --dialect`` command publishes) from SensorGate telemetry events
with known readings, published to the real mosquitto, adapted by the gateway and stored;
the test reads the readings back from influxd by device and metric.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contract import Reading, TelemetryEvent, encode
from edge.mqtt import MqttLink
from gateway.settings import GatewaySettings
from simulators.dialects import DialectPublisher
from tests.integration.conftest import gateway_thread, wait_for

pytestmark = pytest.mark.integration

ADAPTERS = {
    "zigbee2mqtt": '[[adapter]]\nname = "z2m"\nkind = "zigbee2mqtt"\ntopic = "zigbee2mqtt"\n'
    'site = "{site}"\nsensor = "zigbee"\n',
    "tasmota": '[[adapter]]\nname = "tas"\nkind = "tasmota"\ntopic = "%prefix%/%topic%/"\n'
    'site = "{site}"\ntimezone = "UTC"\n',
    "shelly": '[[adapter]]\nname = "shelly"\nkind = "shelly"\ntopic = "shellies"\n'
    'gen2_prefixes = ["+"]\nsite = "{site}"\n',
    "telegraf": '[[adapter]]\nname = "tg"\nkind = "telegraf"\ntopic = "telegraf"\n'
    'site = "{site}"\ndevice_tag = "host"\nsite_tag = "site"\n',
    "sparkplug": '[[adapter]]\nname = "spb"\nkind = "sparkplug"\ntopic = "spBv1.0"\n'
    "site_from_group = true\n",
}


class _Capture:
    """A publisher that keeps what the dialect renderer makes (published later, in order)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, key: int = 0
    ) -> None:
        self.messages.append((topic, payload, retain))


def _events(site: str, device: str, base: datetime) -> tuple[list[TelemetryEvent], dict]:  # type: ignore[type-arg]
    events, expected = [], {}
    for i in range(5):
        at = base + timedelta(seconds=i)
        value = 20.0 + i * 0.5
        events.append(
            TelemetryEvent.create(
                site=site,
                device=device,
                sequence=i,
                readings=[Reading(sensor="t", metric="temperature", value=value, time=at)],
            )
        )
        expected[i] = value
    return events, expected


@pytest.mark.parametrize("dialect", sorted(ADAPTERS))
def test_a_foreign_device_reaches_influxdb_through_its_adapter(
    dialect: str,
    gateway_settings: GatewaySettings,
    publisher: MqttLink,
    unique: str,
    tmp_path: Path,
) -> None:
    site = f"s{unique[:6]}"
    device = f"dev-{unique[:6]}"
    adapters = tmp_path / "adapters.toml"
    adapters.write_text(ADAPTERS[dialect].format(site=site))
    settings = gateway_settings.model_copy(update={"adapters_file": adapters})
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    events, expected = _events(site, device, base)
    capture = _Capture()
    dialects = DialectPublisher(capture, dialect)
    for event in events:
        dialects.publish(settings.topics.telemetry(site, device), encode(event))
    assert capture.messages, "the renderer made nothing"
    with gateway_thread(settings) as gw:
        tickets = [publisher.publish(t, p, qos=1, retain=r) for t, p, r in capture.messages]
        assert all(t.wait(10) for t in tickets)
        wait_for(
            lambda: (
                gw.query.scalar(
                    f"SELECT count(value) FROM {gw.query.layout.readings}"
                    f" WHERE metric = 'temperature' AND device =~ /{device}/"
                )
                >= len(expected)
            ),
            60,
            f"{dialect}: the readings in InfluxDB",
        )
        rows = gw.query.query(
            f"SELECT value, site, device FROM {gw.query.layout.readings}"
            f" WHERE metric = 'temperature' AND device =~ /{device}/"
        )
        letters = gw.query.query(f"SELECT reason, error FROM {gw.query.layout.deadletters}")
    assert sorted(r["value"] for r in rows) == sorted(expected.values()), json.dumps(letters)
    assert {r["site"] for r in rows} == {site}
    # Retained births and availability are cleared so that later tests start clean.
    for topic, _payload, retain in capture.messages:
        if retain:
            publisher.publish(topic, b"", qos=1, retain=True).wait(10)


def test_home_assistant_discovery_learns_a_sensor_and_reads_its_states(
    gateway_settings: GatewaySettings,
    publisher: MqttLink,
    unique: str,
    tmp_path: Path,
) -> None:
    # The configs of Home Assistant's MQTT discovery documentation ("Discovery
    # examples": a sensor with multiple measurement values), under this test's names.
    site = f"s{unique[:6]}"
    node = f"room{unique[:6]}"
    adapters = tmp_path / "adapters.toml"
    adapters.write_text(
        '[[adapter]]\nname = "ha"\nkind = "homeassistant"\ntopic = "homeassistant"\n'
        f'state_filters = ["homeassistant/sensor/+/state"]\nsite = "{site}"\n'
    )
    settings = gateway_settings.model_copy(update={"adapters_file": adapters})
    state_topic = f"homeassistant/sensor/{node}/state"
    config = {
        "device_class": "temperature",
        "state_topic": state_topic,
        "unit_of_measurement": "°C",
        "value_template": "{{ value_json.temperature }}",
        "unique_id": f"temp{unique}",
        "device": {"identifiers": [node], "name": "Bedroom"},
    }
    config_topic = f"homeassistant/sensor/{node}T/config"
    with gateway_thread(settings) as gw:
        assert publisher.publish(config_topic, json.dumps(config).encode(), retain=True).wait(10)
        values = [21.5, 22.0, 22.5]
        # The config goes first on the same connection, so the broker delivers it first,
        # and every Home Assistant topic of one adapter goes to one shard, in order.
        for value in values:
            payload = json.dumps({"temperature": value}).encode()
            assert publisher.publish(state_topic, payload).wait(10)
        query = (
            f"SELECT value, site, device FROM {gw.query.layout.readings}"
            f" WHERE metric = 'temperature' AND device =~ /{node}/"
        )
        wait_for(lambda: len(gw.query.query(query)) >= len(values), 60, "the states in InfluxDB")
        rows = gw.query.query(query)
    assert sorted(r["value"] for r in rows) == values
    assert {r["site"] for r in rows} == {site}
    assert publisher.publish(config_topic, b"", retain=True).wait(10)
