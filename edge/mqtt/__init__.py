"""The project's one paho-mqtt adapter: edge agents, simulators and the gateway use it.

- :mod:`~edge.mqtt.link`: :class:`MqttLink`, one connection (connect, reconnect with
  jittered backoff, publish, subscribe, receive with manual acknowledgement), and the
  translation of paho's errors into :class:`~contract.errors.BrokerError`.
- :mod:`~edge.mqtt.client`: the paho client made from settings (credentials, TLS, will,
  MQTT 5 CONNECT properties), and :func:`message_topic`.
- :mod:`~edge.mqtt.answers`: the broker's PUBACK, SUBACK and UNSUBACK answers (refusals,
  grants).
- :mod:`~edge.mqtt.settings`: :class:`MqttSettings`, :class:`Will`, :class:`Refusal`.
- :mod:`~edge.mqtt.ticket`: :class:`PublishTicket`, the broker's acknowledgement of a publish.
- :mod:`~edge.mqtt.backoff`: :class:`Backoff`, capped exponential backoff with jitter.
- :mod:`~edge.mqtt.buffered`: large socket reads under paho for receivers that read a lot
  (the one use of a private paho name, tested in tests/edge/test_mqtt_paho_private.py).

The gateway's MQTT source (:mod:`gateway.connectors.mqtt_source`) and sinks receive and
publish through :class:`MqttLink` too. This package may import ``contract`` and paho
only: an edge-only install has no gateway.
"""

from __future__ import annotations

from contract.tls import TlsSettings
from edge.mqtt.backoff import Backoff
from edge.mqtt.client import message_topic
from edge.mqtt.link import MessageHandler, MqttLink
from edge.mqtt.settings import MqttSettings, Refusal, Will
from edge.mqtt.ticket import PublishTicket

__all__ = [
    "Backoff",
    "MessageHandler",
    "MqttLink",
    "MqttSettings",
    "PublishTicket",
    "Refusal",
    "TlsSettings",
    "Will",
    "message_topic",
]
