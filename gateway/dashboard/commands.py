"""The acknowledge command the dashboard publishes over MQTT.

Topic ``{prefix}/{site}/{device}/commands`` (QoS 1, not retained) from
:class:`contract.TopicScheme`; payload the contract's
:class:`~contract.commands.AcknowledgeAlarmCommand` (CloudEvents structured JSON,
``io.sensorgate.alarm.acknowledge.v1``, ``data = {site, device, alarm_id, by, note}``,
the envelope ``time`` saying when the operator acknowledged). Nothing here builds a
payload or a topic by hand: a change of the contract reaches the dashboard as is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from contract import TopicScheme
from contract.commands import AcknowledgeAlarmCommand
from contract.errors import BrokerError, ContractError
from contract.topics import TopicKind
from edge.mqtt import PublishTicket

__all__ = ["ACK_TYPE", "AckMessage", "AckPublisher", "ack_message", "publish_ack"]

ACK_TYPE = AcknowledgeAlarmCommand.TYPE


@dataclass(frozen=True, slots=True)
class AckMessage:
    """An acknowledge command ready to publish."""

    topic: str
    payload: bytes

    @property
    def document(self) -> dict[str, Any]:
        """The command as JSON-ready data."""
        doc: dict[str, Any] = json.loads(self.payload)
        return doc


def ack_message(
    topics: TopicScheme, *, site: str, device: str, alarm_id: str, by: str, note: str = ""
) -> AckMessage:
    """Build the command and its topic; raise :class:`ContractError` saying what is wrong."""
    topic = topics.device(site, device, TopicKind.COMMANDS)  # TopicError names a bad id
    try:
        command = AcknowledgeAlarmCommand.create(
            site=site, device=device, alarm_id=alarm_id, by=by, note=note
        )
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:] or e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)[:3]
        )
        raise ContractError(f"not a valid acknowledge command: {detail}") from None
    return AckMessage(topic, command.model_dump_json(exclude_none=True).encode("utf-8"))


class AckPublisher(Protocol):
    """Anything with a blocking ``publish(topic, payload, qos=...)`` (``MqttLink``)."""

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> Any:
        """Queue one message."""
        ...


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
    """Publish the acknowledge command (QoS 1) with a blocking publisher; return it.

    With an :class:`~edge.mqtt.MqttLink`, waits up to ``timeout`` seconds for the
    broker's PUBACK and raises :class:`~contract.errors.BrokerError` when it does not
    come or refuses the command (MQTT 5 reason code: the broker's ACL).
    """
    message = ack_message(topics, site=site, device=device, alarm_id=alarm_id, by=by, note=note)
    ticket = publisher.publish(message.topic, message.payload, qos=1)
    if isinstance(ticket, PublishTicket):
        if not ticket.wait(timeout):
            raise BrokerError(f"the broker did not acknowledge the command within {timeout:g} s")
        ticket.raise_if_refused()
    return message.document
