"""A buffered (receiving) paho client keeps a link that streams while its PINGRESP is late."""

from __future__ import annotations

import socket
import time

from paho.mqtt.client import MQTTErrorCode
from paho.mqtt.enums import CallbackAPIVersion

from edge.mqtt.buffered import BufferedClient as _Client


def _client_waiting_for_a_pingresp(bytes_ago_s: float) -> tuple[_Client, socket.socket]:
    client = _Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="t")
    ours, theirs = socket.socketpair()
    client._sock = ours  # a connected link, as far as loop_misc looks
    client._keepalive = 30
    now = time.monotonic()
    client._ping_t = now - 40  # a PINGREQ left 40 s ago, no PINGRESP yet
    client._last_bytes_received = now - bytes_ago_s
    client._last_msg_out = now
    return client, theirs


def test_a_late_pingresp_behind_streaming_messages_does_not_drop_the_link() -> None:
    client, peer = _client_waiting_for_a_pingresp(bytes_ago_s=0.5)
    try:
        assert client.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS
        assert client._sock is not None
    finally:
        peer.close()
        if client._sock is not None:
            client._sock.close()


def test_a_silent_link_still_times_out() -> None:
    client, peer = _client_waiting_for_a_pingresp(bytes_ago_s=45)
    try:
        assert client.loop_misc() == MQTTErrorCode.MQTT_ERR_CONN_LOST
        assert client._sock is None
    finally:
        peer.close()
