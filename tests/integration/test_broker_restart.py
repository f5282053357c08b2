"""The broker stops and comes back: what the gateway's MQTT links and sessions keep.

Found by ``sensorgate chaos``: an alarm published while the broker was down made the
alarm sink fail at once (paho reports such a message as "not connected", though it
sends it on reconnect), and the gateway's flow died. And mosquitto 2.0 restores a
persistent session's plain subscriptions after a restart, not its shared ones.
"""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.mqtt import MqttLink, MqttSettings
from gateway.localstack.services import start_mosquitto

pytestmark = pytest.mark.integration


def test_a_publish_queued_while_the_broker_is_down_is_acknowledged_when_it_is_back(
    tmp_path: Path, unique: str
) -> None:
    broker, port = start_mosquitto(tmp_path)
    link = MqttLink(
        MqttSettings(
            host="127.0.0.1",
            port=port,
            client_id=f"link-{unique}",
            clean_session=False,
            reconnect_min_s=0.1,
            reconnect_max_s=0.5,
        )
    )
    link.start()
    try:
        broker.stop()
        # Publish only once the link knows it is down: paho then keeps the message and
        # answers "not connected" (before that, it would take the message as sent).
        gone = threading.Event()
        for _ in range(300):
            if not link.connected:
                break
            gone.wait(0.1)
        assert not link.connected
        ticket = link.publish(f"t/{unique}", b"alarm", qos=1)
        assert not ticket.is_acknowledged()
        broker, _ = start_mosquitto(tmp_path, port=port)
        assert ticket.wait(30), "the queued publish was never acknowledged"
    finally:
        link.stop()
        broker.stop()


def _subscriber(port: int, client_id: str, topic_filter: str, got: list[bytes]) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    subscribed = threading.Event()
    client.on_connect = lambda c, *_a: c.subscribe(topic_filter, qos=1)
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_message = lambda _c, _u, msg: got.append(bytes(msg.payload))
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    assert subscribed.wait(10)
    return client


def test_a_plain_persistent_subscription_survives_a_broker_restart(
    tmp_path: Path, unique: str
) -> None:
    """Why ``mqtt.share_group = ""`` exists: what is published while the gateway is away
    and the broker restarted is queued for it (for a shared subscription it is not)."""
    broker, port = start_mosquitto(tmp_path)
    got: list[bytes] = []
    try:
        client = _subscriber(port, f"gw-{unique}", f"t/{unique}/#", got)
        client.loop_stop()
        client.disconnect()
        broker.stop()
        broker, _ = start_mosquitto(tmp_path, port=port)
        pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        pub.publish(f"t/{unique}/x", b"while away", qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        client = _subscriber(port, f"gw-{unique}", f"t/{unique}/#", got)
        deadline = threading.Event()
        for _ in range(50):
            if got:
                break
            deadline.wait(0.1)
        client.loop_stop()
        client.disconnect()
        assert got == [b"while away"]
    finally:
        broker.stop()
