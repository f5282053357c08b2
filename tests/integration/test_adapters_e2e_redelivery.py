"""A Shelly Gen1 value the broker delivers twice is stored once (real broker, gateway, influxd).

Gen1 values are plain numbers with no time and no sequence: the gateway dates them by
arrival and derives their sequence from that date. The broker resends a QoS 1 message
it has no PUBACK for, with ``DUP`` and its packet id, when the gateway's session comes
back; the gateway's source gives such a resend its first delivery's arrival stamp, so
it gets the same sequence and the shard drops it as a duplicate.

The redelivery is made to order: the gateway talks to mosquitto through a proxy that
loses its PUBACKs (:mod:`tests.integration.mqtt_proxy`), then cuts the connection once
every value is stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.mqtt import MqttLink
from gateway.settings import GatewaySettings
from tests.integration.gateway_kit import gateway_thread
from tests.integration.mqtt_proxy import AckLosingProxy
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

TAILS = [
    "relay/0/power",
    "relay/0/energy",
    "emeter/0/voltage",
    "emeter/0/current",
    "sensor/temperature",
    "sensor/humidity",
    "sensor/battery",
    "sensor/lux",
]


@pytest.fixture
def proxy(gateway_settings: GatewaySettings) -> Iterator[AckLosingProxy]:
    """A PUBACK-losing proxy in front of the test broker."""
    running = AckLosingProxy(gateway_settings.mqtt.host, gateway_settings.mqtt.port)
    yield running
    running.close()


def test_a_redelivered_gen1_value_is_stored_once(
    gateway_settings: GatewaySettings,
    publisher: MqttLink,
    proxy: AckLosingProxy,
    unique: str,
    tmp_path: Path,
) -> None:
    device = f"plug{unique[:6]}"
    adapters = tmp_path / "adapters.toml"
    adapters.write_text(
        '[[adapter]]\nname = "shelly"\nkind = "shelly"\ntopic = "shellies"\ngen1 = true\n'
        f'site = "s{unique[:6]}"\n'
    )
    settings = gateway_settings.model_copy(
        update={
            "adapters_file": adapters,
            "mqtt": gateway_settings.mqtt.model_copy(update={"port": proxy.port}),
        }
    )
    # Three ticks of eight values, each tick published together (the same millisecond
    # for several of them at the gateway), some values repeating.
    messages = [
        (f"shellies/{device}/{tail}", f"{20 + (k % 5) * 0.5}".encode())
        for tick in range(3)
        for k, tail in enumerate(TAILS)
    ]
    count = f"SELECT count(value) FROM {{m}} WHERE device = '{device}'"
    with gateway_thread(settings) as gw:
        query = count.format(m=gw.query.layout.readings)
        proxy.lose_acks.set()
        tickets = [publisher.publish(t, p, qos=1) for t, p in messages]
        assert all(t.wait(10) for t in tickets)
        wait_for(lambda: gw.query.scalar(query) == len(messages), 60, "every value stored")
        # The gateway acknowledged them all (after their epoch was stored): lost here.
        wait_for(lambda: proxy.lost >= len(messages), 30, "the gateway's PUBACKs")
        registry = gw.metrics.registry
        before = registry.get_sample_value("sensorgate_redelivered_messages_total") or 0.0
        proxy.lose_acks.clear()
        proxy.cut()  # the broker resends every unacknowledged message, with DUP
        wait_for(
            lambda: (
                (registry.get_sample_value("sensorgate_redelivered_messages_total") or 0.0) - before
                >= len(messages)
            ),
            60,
            "the broker's redeliveries",
        )
        wait_for(
            lambda: (
                (registry.get_sample_value("sensorgate_duplicate_readings_total") or 0.0)
                >= len(messages)
            ),
            60,
            "the redeliveries taken for duplicates",
        )
        stored = gw.query.scalar(query)
    assert stored == len(messages)
