"""The asyncio fleet's own QoS 1 telemetry packets: PUBLISH bytes out, PUBACKs in.

paho builds an ``MQTTMessage`` and an ``MQTTMessageInfo`` (with a
``threading.Condition``) for every publish, and decodes every PUBACK into a
``ReasonCode`` and a ``Properties``; at 20,000 simulated devices that is most of a
connection's CPU per event. :func:`publish_packet` encodes the PUBLISH paho would
send, for paho's own packet queue (so it is written and counted for the keepalive as
any other packet), and :func:`handle_puback` reads the packet id of a PUBACK and calls
the sender back. Both follow paho 2's private ``_send_publish`` and
``_handle_pubackcomp``; ``tests/simulators/test_sim_fleet_connections.py`` pins them
byte for byte and step for step, so a paho upgrade that changes them fails a test.
Used by :mod:`simulators.aio_link` only.
"""

from __future__ import annotations

from collections.abc import Callable

import paho.mqtt.client as paho_mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from simulators.varint import varint

__all__ = ["PUBLISH_QOS1", "OnSent", "handle_puback", "publish_packet"]

OnSent = Callable[[int], None]
"""Called with the packet id once the broker has a message sent by ``DeviceLink.send``."""

PUBLISH_QOS1 = paho_mqtt.PUBLISH | (1 << 1)
"""The first byte of a QoS 1 PUBLISH (no DUP, no RETAIN)."""

_PUBLISH_QOS1_BYTE = bytes((PUBLISH_QOS1,))
_PUBACK_OK = ReasonCode(PacketTypes.PUBACK)
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]
_paho_handle_pubackcomp = paho_mqtt.Client._handle_pubackcomp


def publish_packet(topic_head: bytes, mid: int, payload: bytes) -> bytes:
    """Encode an MQTT 3.1.1 PUBLISH at QoS 1 as paho's ``_send_publish`` does.

    ``topic_head`` is the topic with its 2-byte length. No ``MQTTMessage``,
    ``MQTTMessageInfo`` (with its ``threading.Condition``) or entry in paho's
    ``_out_messages``: the PUBACK is matched by :func:`handle_puback` against the client's
    own record of what it sent, and a message lost with its connection is sent again
    by its device on the next one.
    """
    length = varint(len(topic_head) + 2 + len(payload))  # the Remaining Length
    return b"".join((_PUBLISH_QOS1_BYTE, length, topic_head, mid.to_bytes(2, "big"), payload))


def handle_puback(paho: paho_mqtt.Client, cmd: str, sent: dict[int, OnSent]) -> MQTTErrorCode:
    """Handle an MQTT 3.1.1 PUBACK as paho's ``_handle_pubackcomp``, without decoding objects.

    A PUBACK of a message of ``DeviceLink.send`` goes to its callback. Otherwise
    the same steps as paho's (packet id, then ``_do_on_publish`` if the message is
    outstanding) with shared reason code and properties, which paho only passes on to
    ``on_publish``; anything else (PUBCOMP, MQTT 5, a malformed packet) is paho's.
    """
    packet = paho._in_packet["packet"]
    if cmd != "PUBACK" or len(packet) != 2 or paho._protocol == paho_mqtt.MQTTv5:
        return _paho_handle_pubackcomp(paho, cmd)  # type: ignore[arg-type]
    mid = (packet[0] << 8) | packet[1]
    on_sent = sent.pop(mid, None)
    if on_sent is not None:
        on_sent(mid)
        return paho_mqtt.MQTT_ERR_SUCCESS
    with paho._out_message_mutex:
        if mid in paho._out_messages:
            return paho._do_on_publish(mid, _PUBACK_OK, _NO_PROPERTIES)
    return paho_mqtt.MQTT_ERR_SUCCESS
