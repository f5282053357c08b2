"""Decode and validate incoming MQTT messages: accepted telemetry, or a dead letter.

Pure logic, no Bytewax: :class:`Ingestor.accept` takes a :class:`RawMessage` and
returns :class:`Accepted` or :class:`Rejected`. Every rejection carries one of the
fixed :class:`~contract.reasons.DeadLetterReason` values and the raw bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from contract import (
    DEFAULT_DEADLETTER_KEEP_BYTES,
    DEFAULT_MAX_PAYLOAD_BYTES,
    DeadLetterEvent,
    DeadLetterReason,
    DecodeError,
    DeviceOfflineEvent,
    DeviceOnlineEvent,
    TelemetryEvent,
    TopicError,
    TopicKind,
    TopicScheme,
    decode_as,
)
from contract.codec import decode
from contract.commands import AcknowledgeAlarmCommand, Command

__all__ = [
    "Accepted",
    "CommandIn",
    "IngestLimits",
    "Ingestor",
    "RawMessage",
    "Rejected",
    "StatusIn",
    "device_key",
]


def device_key(site: str, device: str) -> str:
    """Return the key that keeps a device's state on one worker.

    Unambiguous: ids cannot contain ``/``.
    """
    return f"{site}/{device}"


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message as it came off the broker."""

    topic: str
    payload: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid telemetry event, with when the gateway received it."""

    event: TelemetryEvent
    received_at: datetime

    @property
    def device_key(self) -> str:
        """The key that keeps a device's state on one worker."""
        return device_key(self.event.data.site, self.event.data.device)


@dataclass(frozen=True, slots=True)
class StatusIn:
    """A device's birth, heartbeat or last will, as it came off its status topic.

    The event's own ``time`` is not when the status became true: a last will is
    built when the device connects and published by the broker when the link dies.
    So the gateway dates status events by their arrival (``received_at``).
    """

    event: DeviceOnlineEvent | DeviceOfflineEvent
    received_at: datetime

    @property
    def device_key(self) -> str:
        """The key of the device (same as its telemetry's)."""
        return device_key(self.event.data.site, self.event.data.device)

    def arrival_event(self) -> DeviceOnlineEvent | DeviceOfflineEvent:
        """Return the event re-dated to its arrival at the gateway."""
        return self.event.model_copy(update={"time": self.received_at})


@dataclass(frozen=True, slots=True)
class CommandIn:
    """An operator command about one device (acknowledge an alarm)."""

    command: Command
    received_at: datetime

    @property
    def device_key(self) -> str:
        """The key of the device the command is about."""
        return device_key(self.command.data.site, self.command.data.device)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that could not be accepted, and why."""

    message: RawMessage
    reason: DeadLetterReason
    error: str

    def to_event(
        self, gateway: str = "gateway", keep_bytes: int | None = DEFAULT_DEADLETTER_KEEP_BYTES
    ) -> DeadLetterEvent:
        """Return the dead-letter event that records this rejection.

        It keeps at most ``keep_bytes`` of the payload, with its size and sha256.
        """
        return DeadLetterEvent.create(
            reason=self.reason,
            error=self.error,
            topic=self.message.topic,
            payload=self.message.payload,
            received_at=self.message.received_at,
            gateway=gateway,
            keep_bytes=keep_bytes,
        )


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """What the gateway accepts."""

    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_future: timedelta = timedelta(minutes=5)
    max_past: timedelta = timedelta(days=30)
    deadletter_keep_bytes: int | None = DEFAULT_DEADLETTER_KEEP_BYTES
    """Payload bytes a dead letter keeps (None: all of it)."""


class Ingestor:
    """Turns raw messages into accepted telemetry or rejections."""

    def __init__(self, topics: TopicScheme, limits: IngestLimits | None = None) -> None:
        self.topics = topics
        self.limits = limits or IngestLimits()

    def accept(self, msg: RawMessage) -> Accepted | StatusIn | CommandIn | Rejected:
        """Decode and validate one message; never raises.

        Telemetry, status and command topics are told apart by the topic's last level.
        """
        try:
            where = self.topics.parse(msg.topic)
        except TopicError as exc:
            return Rejected(msg, DeadLetterReason.TOPIC_MISMATCH, str(exc))
        if where.kind is TopicKind.STATUS:
            return self._status(msg, where.site, where.device)
        if where.kind is TopicKind.COMMANDS:
            return self._command(msg, where.site, where.device)
        try:
            event = decode_as(msg.payload, TelemetryEvent, max_bytes=self.limits.max_payload_bytes)
        except DecodeError as exc:
            return Rejected(msg, exc.reason, exc.detail)
        except Exception as exc:  # the contract promises DecodeError; belt and braces
            return Rejected(msg, DeadLetterReason.DECODE_ERROR, f"{type(exc).__name__}: {exc}")
        data = event.data
        if data.site != where.site or data.device != where.device:
            return Rejected(
                msg,
                DeadLetterReason.TOPIC_MISMATCH,
                f"event is from site {data.site!r} device {data.device!r} but was published"
                f" on the topic of site {where.site!r} device {where.device!r}",
            )
        earliest = msg.received_at - self.limits.max_past
        latest = msg.received_at + self.limits.max_future
        for reading in data.readings:
            if not earliest <= reading.time <= latest:
                return Rejected(
                    msg,
                    DeadLetterReason.TIMESTAMP_OUT_OF_RANGE,
                    f"reading {reading.sensor}/{reading.metric} has time"
                    f" {reading.time.isoformat()}; accepted times are from"
                    f" {earliest.isoformat()} to {latest.isoformat()}",
                )
        return Accepted(event, msg.received_at)

    def _status(self, msg: RawMessage, site: str, device: str) -> StatusIn | Rejected:
        try:
            event = decode(msg.payload, max_bytes=self.limits.max_payload_bytes)
        except DecodeError as exc:
            return Rejected(msg, exc.reason, exc.detail)
        except Exception as exc:  # belt and braces, as for telemetry
            return Rejected(msg, DeadLetterReason.DECODE_ERROR, f"{type(exc).__name__}: {exc}")
        if not isinstance(event, DeviceOnlineEvent | DeviceOfflineEvent):
            return Rejected(
                msg,
                DeadLetterReason.SCHEMA_VIOLATION,
                f"expected a device.online or device.offline event on a status topic;"
                f" got {event.type!r}",
            )
        return self._same_device(msg, site, device, event.data.site, event.data.device) or (
            StatusIn(event, msg.received_at)
        )

    def _command(self, msg: RawMessage, site: str, device: str) -> CommandIn | Rejected:
        try:
            command = decode_as(
                msg.payload, AcknowledgeAlarmCommand, max_bytes=self.limits.max_payload_bytes
            )
        except DecodeError as exc:
            return Rejected(msg, exc.reason, exc.detail)
        except Exception as exc:
            return Rejected(msg, DeadLetterReason.DECODE_ERROR, f"{type(exc).__name__}: {exc}")
        data = command.data
        return self._same_device(msg, site, device, data.site, data.device) or (
            CommandIn(command, msg.received_at)
        )

    @staticmethod
    def _same_device(
        msg: RawMessage, site: str, device: str, said_site: str, said_device: str
    ) -> Rejected | None:
        if said_site == site and said_device == device:
            return None
        return Rejected(
            msg,
            DeadLetterReason.TOPIC_MISMATCH,
            f"message is about site {said_site!r} device {said_device!r} but was published"
            f" on the topic of site {site!r} device {device!r}",
        )
