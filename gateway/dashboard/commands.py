"""The acknowledge command the dashboard publishes over MQTT.

Topic ``{prefix}/{site}/{device}/commands`` (QoS 1, not retained); payload a
CloudEvents structured JSON event of type ``io.sensorgate.alarm.acknowledge.v1``
with ``data = {site, device, alarm_id, by, note}`` and the envelope ``time`` saying
when the operator acknowledged: the same document as ``contract.commands`` of the
alarm wiring. Change :func:`ack_command` alone if that contract moves.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from contract import TopicScheme
from contract.errors import BrokerError
from contract.events import device_source
from contract.topics import TopicKind
from edge.mqtt import PublishTicket

__all__ = ["ACK_TYPE", "AckPublisher", "ack_command", "publish_ack"]

ACK_TYPE = "io.sensorgate.alarm.acknowledge.v1"


class AckPublisher(Protocol):
    """Anything with ``publish(topic, payload, qos=...)`` (``MqttLink``)."""

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> Any:
        """Queue one message."""
        ...


def ack_command(
    *, site: str, device: str, alarm_id: str, by: str, at: datetime | None = None, note: str = ""
) -> dict[str, Any]:
    """Return the acknowledge command as a JSON-ready dict."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": device_source(site, device),
        "type": ACK_TYPE,
        "time": at.isoformat().replace("+00:00", "Z"),
        "subject": device,
        "datacontenttype": "application/json",
        "data": {"site": site, "device": device, "alarm_id": alarm_id, "by": by, "note": note},
    }


def publish_ack(
    publisher: AckPublisher,
    topics: TopicScheme,
    *,
    site: str,
    device: str,
    alarm_id: str,
    by: str,
    note: str = "",
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Publish the acknowledge command (QoS 1) and return it.

    With an :class:`~edge.mqtt.MqttLink`, waits up to ``timeout`` seconds for the
    broker's PUBACK and raises :class:`~contract.errors.BrokerError` when it does not
    come or refuses the command (MQTT 5 reason code: the broker's ACL).
    """
    doc = ack_command(site=site, device=device, alarm_id=alarm_id, by=by, note=note)
    topic = topics.device(site, device, TopicKind.COMMANDS)
    ticket = publisher.publish(topic, json.dumps(doc).encode(), qos=1)
    if isinstance(ticket, PublishTicket):
        if not ticket.wait(timeout):
            raise BrokerError(f"the broker did not acknowledge the command within {timeout:g} s")
        ticket.raise_if_refused()
    return doc
