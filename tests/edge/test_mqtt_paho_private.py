"""The paho internals the one paho adapter (edge/mqtt) leans on: fail if paho changes them.

- ``Client._create_socket`` (edge/mqtt/buffered.py): overridden to read the socket in
  large chunks; paho must still make every connection's socket through it.
- ``Client._out_messages`` (edge/mqtt/answers.py): where a refused publish's topic is
  looked up for the log (without it the log says "?").
- ``MQTTMessage.topic`` raising :class:`UnicodeDecodeError` on bytes that are not UTF-8,
  with the raw bytes on the error (edge/mqtt/client.py, :func:`message_topic`).
"""

from __future__ import annotations

import inspect

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.mqtt import message_topic
from edge.mqtt.buffered import BufferedClient


def test_paho_makes_each_connection_socket_in_create_socket() -> None:
    assert "_create_socket" in vars(mqtt.Client)
    assert "self._create_socket()" in inspect.getsource(mqtt.Client.reconnect)
    assert "_create_socket" in vars(BufferedClient)


def test_paho_checks_pending_bytes_before_waiting_in_select() -> None:
    # BufferedSocket.pending() is how paho learns that bytes wait in the buffer.
    assert "pending" in inspect.getsource(mqtt.Client._loop)


def test_paho_keeps_outgoing_messages_by_id() -> None:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    assert isinstance(client._out_messages, dict)


def test_a_topic_that_is_not_utf8_is_read_with_replacement_characters() -> None:
    assert message_topic(mqtt.MQTTMessage(topic=b"sg/t/\xff/x")) == "sg/t/\ufffd/x"
    assert message_topic(mqtt.MQTTMessage(topic="sg/t/é".encode())) == "sg/t/é"


def test_paho_keeps_the_ping_and_receive_times_buffered_client_reads() -> None:
    # BufferedClient.loop_misc clears _ping_t when bytes arrived after the PINGREQ.
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    assert client._ping_t == 0
    assert isinstance(client._last_bytes_received, float)
    source = inspect.getsource(mqtt.Client._check_keepalive)
    assert "_ping_t" in source
    assert "_last_bytes_received" in source
