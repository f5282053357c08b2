"""``sensorgate alarms ack``: send an operator command to the gateway over MQTT.

The command is an :class:`~contract.commands.AcknowledgeAlarmCommand` published with
QoS 1 on ``{prefix}/{site}/{device}/commands``; the gateway routes it to the device's
key, where the alarm state lives, and publishes the ``alarm.acknowledged`` event. The
broker and the prefix come from the gateway settings (``SENSORGATE_MQTT__HOST``,
``SENSORGATE_MQTT__PORT``, ``SENSORGATE_TOPIC_PREFIX``) unless given as options.

It connects as the *operator* role (MQTT 5, ``mqtt.tls``, the user of
``SENSORGATE_MQTT__OPERATOR__USERNAME``/``__PASSWORD``, or ``--user`` with the password
from ``--password-file``; never from the command line), so the broker's ACL decides
who may acknowledge: a refusal comes back in the PUBACK and is reported as such.
Exit codes: 0 the broker has the command, 1 it did not acknowledge or refused it,
2 bad options.

:func:`ack_message` is the one place that builds the command and its topic (the
dashboard's acknowledge button publishes it too); nothing builds either by hand, so a
change of the contract reaches every sender as is.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from contract import TopicScheme
from contract.commands import AcknowledgeAlarmCommand
from contract.errors import ContractError
from contract.topics import TopicKind

if TYPE_CHECKING:
    from edge.mqtt import MqttSettings

__all__ = ["ACK_TYPE", "AckMessage", "ack_message", "publish_ack", "register"]

ACK_TYPE = AcknowledgeAlarmCommand.TYPE


@dataclass(frozen=True, slots=True)
class AckMessage:
    """An acknowledge command ready to publish (QoS 1, not retained)."""

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


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``alarms ack`` to a ``sensorgate`` parser."""
    alarms = subparsers.add_parser("alarms", help="act on alarms (acknowledge)")
    sub = alarms.add_subparsers(dest="alarms_command", metavar="SUBCOMMAND", required=True)
    ack = sub.add_parser(
        "ack",
        help="acknowledge an active alarm (kept until it clears)",
        description="Publish an acknowledge command for ALARM_ID on the device's commands"
        " topic (QoS 1). The gateway records who and when and publishes an"
        " alarm.acknowledged event; an alarm that is not active is left alone.",
    )
    ack.add_argument("alarm_id", metavar="ALARM_ID", help="the alarm's id (from its events)")
    ack.add_argument("--site", required=True, help="site of the device")
    ack.add_argument("--device", required=True, help="device of the alarm")
    ack.add_argument("--by", required=True, help="who acknowledges")
    ack.add_argument("--note", default="", help="free text kept with the command")
    ack.add_argument("--host", default=None, help="broker host (default: gateway settings)")
    ack.add_argument("--port", type=int, default=None, help="broker port")
    ack.add_argument(
        "--user",
        default=None,
        help="operator's broker user (default: SENSORGATE_MQTT__OPERATOR__USERNAME)",
    )
    ack.add_argument(
        "--password-file",
        type=Path,
        default=None,
        help="file holding the operator's password (default: SENSORGATE_MQTT__OPERATOR__PASSWORD)",
    )
    ack.add_argument("--prefix", default=None, help="topic prefix (default: gateway settings)")
    ack.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for PUBACK")
    ack.add_argument("--json", action="store_true", help="print the command sent as JSON")
    ack.set_defaults(func=_cmd_ack)


def publish_ack(
    *,
    mqtt: MqttSettings,
    prefix: str,
    site: str,
    device: str,
    alarm_id: str,
    by: str,
    note: str = "",
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Publish one acknowledge command and wait for the broker's PUBACK; return it as JSON.

    Raises :class:`~contract.errors.BrokerError` when the broker cannot be reached,
    does not acknowledge in time, or refuses the command (its ACL: MQTT 5 reason code).
    """
    from contract.errors import BrokerError
    from edge.mqtt import MqttLink

    message = ack_message(
        TopicScheme(prefix), site=site, device=device, alarm_id=alarm_id, by=by, note=note
    )
    settings = mqtt.model_copy(update={"clean_session": True, "protocol": "5"})
    link = MqttLink(settings)
    link.start(wait_s=timeout, fail_fast=True)  # a wrong password says so at once
    try:
        ticket = link.publish(message.topic, message.payload, qos=1)
        if not ticket.wait(timeout):
            raise BrokerError(f"the broker did not acknowledge the command within {timeout} s")
        ticket.raise_if_refused()
    finally:
        link.stop()
    return {"topic": message.topic, "command": message.document}


def _cmd_ack(args: argparse.Namespace) -> int:
    import secrets

    from contract.errors import ConfigError
    from gateway.settings import load_settings

    settings = load_settings()
    mqtt = settings.mqtt.link_settings(f"sg-operator-{secrets.token_hex(4)}", role="operator")
    update: dict[str, Any] = {}
    if args.host:
        update["host"] = args.host
    if args.port:
        update["port"] = args.port
    if args.user:
        update["username"] = args.user
    if args.password_file is not None:
        try:
            password = args.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError("--password-file", f"cannot read it: {exc.strerror}") from None
        from pydantic import SecretStr

        update["password"] = SecretStr(password)
    sent = publish_ack(
        mqtt=mqtt.model_copy(update=update),
        prefix=args.prefix or settings.topic_prefix,
        site=args.site,
        device=args.device,
        alarm_id=args.alarm_id,
        by=args.by,
        note=args.note,
        timeout=args.timeout,
    )
    if args.json:
        print(json.dumps(sent))
    else:
        print(f"acknowledge {args.alarm_id} by {args.by}: sent on {sent['topic']}", file=sys.stderr)
    return 0
