"""MqttLink as a receiver, against the real mosquitto: buffered reads, one SUBSCRIBE for
several filters, manual acknowledgement, and the broker's redelivery of what was not
acknowledged (what the gateway's MQTT source relies on)."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from contract.errors import BrokerError
from edge.mqtt import MqttLink, MqttSettings, message_topic
from tests.waiting import wait_for


def _receiver(
    services: Any, client_id: str, filters: list[str], got: list[mqtt.MQTTMessage]
) -> tuple[MqttLink, threading.Event]:
    granted = threading.Event()
    link = MqttLink(
        MqttSettings(
            host=services.mqtt_host,
            port=services.mqtt_port,
            client_id=client_id,
            receive_maximum=100,
        ),
        on_connect=lambda link: link.subscribe(filters, qos=1),
        on_message=got.append,
        on_subscribed=lambda _granted: granted.set(),
        manual_ack=True,
        buffered_reads=True,
    )
    link.start()
    wait_for(granted.is_set, 10, "the SUBACK granting the filters")
    return link, granted


def test_unacknowledged_messages_come_again_and_acknowledged_ones_do_not(
    services: Any, unique: str
) -> None:
    a, b = f"sgtest/{unique}/a", f"sgtest/{unique}/b"
    got: list[mqtt.MQTTMessage] = []
    link, _ = _receiver(services, f"recv-{unique}", [a, b], got)
    assert link.client.buffered is not None  # type: ignore[attr-defined]  # BufferedClient
    with MqttLink(MqttSettings(host=services.mqtt_host, port=services.mqtt_port)) as pub:
        for i in range(5):
            pub.publish(a if i % 2 else b, str(i).encode()).wait(10)
    wait_for(lambda: len(got) == 5, 10, "five messages")
    assert sorted(m.payload for m in got) == [b"0", b"1", b"2", b"3", b"4"]
    assert {message_topic(m) for m in got} == {a, b}
    link.ack([m.mid for m in got[:3]])
    acked = {m.payload for m in got[:3]}
    link.stop(graceful_s=5)

    again: list[mqtt.MQTTMessage] = []
    link, _ = _receiver(services, f"recv-{unique}", [a, b], again)
    wait_for(lambda: len(again) >= 2, 10, "the two unacknowledged messages again")
    assert {m.payload for m in again} == {b"0", b"1", b"2", b"3", b"4"} - acked
    assert all(m.dup for m in again)
    link.ack([m.mid for m in again])
    link.stop(graceful_s=5)


def test_an_invalid_filter_is_a_broker_error(services: Any) -> None:
    link = MqttLink(MqttSettings(host=services.mqtt_host, port=services.mqtt_port))
    with pytest.raises(BrokerError, match="cannot subscribe"):
        link.subscribe(["ok/#", "bad/#/filter"])


def test_session_present_tells_whether_the_broker_resumed_a_session(
    services: Any, unique: str
) -> None:
    settings = MqttSettings(
        host=services.mqtt_host, port=services.mqtt_port, client_id=f"resume-{unique}"
    )
    with MqttLink(settings) as first:
        assert not first.session_present  # a new client id: nothing to resume
    with MqttLink(settings) as again:
        assert again.session_present
    # Expiry 0 and no clean start: the session is resumed, and ends with this connection.
    ending = settings.model_copy(update={"session_expiry_s": 0})
    with MqttLink(ending) as last:
        assert last.session_present
    with MqttLink(ending) as gone:
        assert not gone.session_present


def test_unsubscribe_waits_for_the_unsuback_and_stops_the_routing(
    services: Any, unique: str
) -> None:
    dropped, kept = f"sgtest/{unique}/dropped", f"sgtest/{unique}/kept"
    got: list[mqtt.MQTTMessage] = []
    link, _ = _receiver(services, f"unsub-{unique}", [dropped, kept], got)
    link.unsubscribe(dropped)  # returns once the broker answered
    with MqttLink(MqttSettings(host=services.mqtt_host, port=services.mqtt_port)) as pub:
        pub.publish(dropped, b"after").wait(10)
        pub.publish(kept, b"marker").wait(10)
    # One publisher, one subscriber: the broker delivers in order, so once the marker
    # is in, a message still routed for the dropped filter would be in too.
    wait_for(lambda: len(got) >= 1, 10, "the marker on the kept filter")
    link.ack([m.mid for m in got])
    assert [(message_topic(m), m.payload) for m in got] == [(kept, b"marker")]
    link.stop(graceful_s=5)


def test_unsubscribe_on_a_link_that_is_down_is_a_broker_error(services: Any) -> None:
    link = MqttLink(MqttSettings(host=services.mqtt_host, port=services.mqtt_port))
    with pytest.raises(BrokerError, match=r"cannot unsubscribe.*not currently connected"):
        link.unsubscribe("sgtest/never")
