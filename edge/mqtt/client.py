"""The paho client a link makes from its settings, and the reading of received messages.

:func:`make_client` turns :class:`~edge.mqtt.settings.MqttSettings` into a paho client
(protocol, session, credentials, TLS, will); :func:`message_topic` reads a topic.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.errors import BrokerError, ConfigError
from edge.mqtt.buffered import BufferedClient
from edge.mqtt.settings import NEVER_EXPIRES, MqttSettings, Will

__all__ = ["ConnectOptions", "make_client", "message_topic"]


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """What CONNECT carries besides the address (MQTT 5 only; paho's defaults else)."""

    clean_start: bool | Literal[3] = mqtt.MQTT_CLEAN_START_FIRST_ONLY
    properties: Properties | None = None


def make_client(
    settings: MqttSettings, *, will: Will | None, manual_ack: bool, buffered_reads: bool
) -> tuple[mqtt.Client, ConnectOptions]:
    """Make the paho client of ``settings`` with credentials, TLS and will.

    Raises :class:`BrokerError` when the TLS files cannot be used.
    """
    clean = settings.clean_session if settings.client_id else True
    cls = BufferedClient if buffered_reads else mqtt.Client
    if settings.protocol == "5":
        # MQTT 5 has no clean_session: clean_start, and a session expiry to keep one.
        connect = ConnectOptions(clean, _connect_properties(settings, clean))
        client = cls(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
    else:
        connect = ConnectOptions()
        client = cls(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=clean,
            protocol=mqtt.MQTTv311,
            manual_ack=manual_ack,
        )
    if settings.username is not None:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    if settings.tls is not None:
        try:
            client.tls_set_context(settings.tls.ssl_context())
        except ConfigError as exc:
            raise BrokerError(f"cannot set up TLS for {settings.url}: {exc}") from None
        except (ssl.SSLError, ValueError) as exc:
            raise BrokerError(f"cannot set up TLS for {settings.url}: {exc}") from exc
    if will is not None:
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    return client, connect


def message_topic(msg: mqtt.MQTTMessage) -> str:
    """Return a received message's topic, even one that is not valid UTF-8.

    paho decodes the topic on every read of ``msg.topic`` and raises on bytes that are
    not UTF-8 (a broker should refuse them; not every broker does). The raw bytes then
    come from the error itself (``UnicodeDecodeError.object``), decoded with
    replacement characters, so such a message reaches the flow and becomes a dead
    letter there instead of killing paho's thread.
    """
    try:
        return msg.topic
    except UnicodeDecodeError as exc:
        return bytes(exc.object).decode("utf-8", "replace")


def _connect_properties(settings: MqttSettings, clean: bool) -> Properties:
    """Return the MQTT 5 CONNECT properties: session expiry and the receive limits."""
    # paho's Properties.__init__ carries no annotations.
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # see above
    expiry = NEVER_EXPIRES if settings.session_expiry_s is None else settings.session_expiry_s
    props.SessionExpiryInterval = 0 if clean else expiry
    if settings.receive_maximum is not None:
        props.ReceiveMaximum = settings.receive_maximum
    if settings.max_packet_bytes is not None:
        props.MaximumPacketSize = settings.max_packet_bytes
    return props
