"""The broker's answers to one link's publishes, subscriptions and unsubscriptions.

MQTT 5 answers with a reason code: 0x80 or more is a refusal (0x87 "Not authorized":
the broker's ACL). :class:`BrokerAnswers` logs and counts each refusal, keeps a
refused publish's :class:`~edge.mqtt.settings.Refusal` for its ticket, hands refusals
to ``on_refused`` and the granted filters of each SUBACK to ``on_subscribed``, and
hands each UNSUBACK to the :class:`Unsubscription` waiting for it. Its handlers run on
paho's network thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from edge.mqtt.settings import MqttSettings, Refusal

__all__ = ["BrokerAnswers", "Unsubscription"]

log = logging.getLogger("edge.mqtt.link")


class Unsubscription:
    """One UNSUBSCRIBE waiting for its UNSUBACK: one reason code per filter."""

    def __init__(self, filters: list[str]) -> None:
        self.filters = filters
        self.answered = threading.Event()
        self.reasons: list[ReasonCode] = []

    def refusals(self) -> list[str]:
        """Return each filter the broker refused (reason code 0x80 or more), with the reason."""
        return [
            f"{topic!r}: {reason}"
            for topic, reason in zip(self.filters, self.reasons, strict=False)
            if isinstance(reason, ReasonCode) and reason.is_failure
        ]


class BrokerAnswers:
    """Refusals and grants of one link (see the module docstring)."""

    def __init__(
        self,
        settings: MqttSettings,
        on_refused: Callable[[Refusal], None] | None,
        on_subscribed: Callable[[list[str]], None] | None,
    ) -> None:
        self._settings = settings
        self._on_refused = on_refused
        self._on_subscribed = on_subscribed
        self.refused = 0
        """Publishes and subscriptions the broker refused."""
        self.refusals: dict[int, Refusal] = {}
        """Message id -> the refusal of the last publish with that id, if refused."""
        self._sub_lock = threading.Lock()
        self._sub_filters: dict[int, list[str]] = {}
        self._unsubs: dict[int, Unsubscription] = {}

    def subscribe(self, client: mqtt.Client, filters: list[str], qos: int) -> MQTTErrorCode:
        """Send one SUBSCRIBE for ``filters``, remembered for its SUBACK; return paho's code."""
        # Held across the call so that the SUBACK (on paho's thread) finds the filters.
        with self._sub_lock:
            result, mid = client.subscribe([(f, qos) for f in filters])
            if mid is not None:
                self._sub_filters[mid] = filters
        return result

    def unsubscribe(
        self, client: mqtt.Client, filters: list[str]
    ) -> tuple[MQTTErrorCode, Unsubscription]:
        """Send one UNSUBSCRIBE for ``filters``; its UNSUBACK goes to the returned waiter."""
        waiter = Unsubscription(filters)
        # Held across the call so that the UNSUBACK (on paho's thread) finds the waiter.
        with self._sub_lock:
            result, mid = client.unsubscribe(filters)
            if mid is not None:
                self._unsubs[mid] = waiter
        return result, waiter

    def unsuback(self, mid: int, reasons: list[ReasonCode]) -> None:
        """Hand the broker's answer to unsubscription ``mid`` to its waiter."""
        with self._sub_lock:
            waiter = self._unsubs.pop(mid, None)
        if waiter is not None:
            waiter.reasons = list(reasons)
            waiter.answered.set()

    def puback(self, client: mqtt.Client, mid: int, reason: ReasonCode) -> None:
        """Record the broker's answer to publish ``mid``."""
        if isinstance(reason, ReasonCode) and reason.is_failure:
            # paho calls this holding its outgoing-message lock, with the message still
            # in its private table: its topic is there to name in the log ("?" if paho
            # renames the table; tests/edge/test_mqtt_paho_private.py notices).
            message = getattr(client, "_out_messages", {}).get(mid)
            topic = getattr(message, "topic", "?")
            self._refuse(Refusal("puback", topic, int(reason.value), str(reason)), mid)
        else:
            self.refusals.pop(mid, None)

    def suback(self, mid: int, reasons: list[ReasonCode]) -> None:
        """Record the broker's answer to subscription ``mid``: one reason per filter."""
        with self._sub_lock:
            filters = self._sub_filters.pop(mid, [])
        granted: list[str] = []
        for i, reason in enumerate(reasons):
            topic = filters[i] if i < len(filters) else "?"
            if isinstance(reason, ReasonCode) and reason.is_failure:
                self._refuse(Refusal("suback", topic, int(reason.value), str(reason)), None)
            else:
                granted.append(topic)
        if granted and self._on_subscribed is not None:
            self._on_subscribed(granted)

    def _refuse(self, refusal: Refusal, mid: int | None) -> None:
        self.refused += 1
        if mid is not None:
            self.refusals[mid] = refusal
        settings = self._settings
        log.warning("%s (client %r at %s)", refusal, settings.client_id, settings.url)
        if self._on_refused is not None:
            self._on_refused(refusal)
