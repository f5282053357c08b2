"""The events of SensorGate, as CloudEvents 1.0 structured JSON envelopes.

Every event is immutable and versioned: its ``type`` ends in ``.v{major}``. Newer
minor versions may add fields, which older readers ignore; a new major version is a
new type. Build events with the ``create`` class methods, which fill in the id, the
source and the time.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import quote

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from contract.ids import Id
from contract.reasons import DeadLetterReason

__all__ = [
    "DEFAULT_DEADLETTER_KEEP_BYTES",
    "EVENT_FAMILIES",
    "DeadLetterData",
    "DeadLetterEvent",
    "DeviceOfflineEvent",
    "DeviceOnlineEvent",
    "DeviceStatusData",
    "Envelope",
    "Event",
    "Reading",
    "TelemetryData",
    "TelemetryEvent",
    "UtcDatetime",
    "device_source",
    "utc_now",
]


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+14:00 is a valid RFC 3339 time but no UTC datetime: a
        # ValueError makes it a validation error (pydantic lets OverflowError through).
        raise ValueError("the time lies outside years 1-9999 once converted to UTC") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, normalised to UTC; naive datetimes are refused."""

MAX_READINGS_PER_EVENT = 10_000

DEFAULT_DEADLETTER_KEEP_BYTES = 64 * 1024
"""Payload bytes a dead letter keeps by default; the rest is summarised by size and sha256."""


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def device_source(site: str, device: str) -> str:
    """Return the CloudEvents ``source`` of a device (a URI reference)."""
    return f"/sg/{quote(site, safe='')}/{quote(device, safe='')}"


class _Frozen(BaseModel):
    # Minor versions may add fields: readers ignore what they do not know.
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class Envelope(_Frozen):
    """Attributes common to every CloudEvents 1.0 structured JSON event."""

    # CloudEvents extension attributes (traceparent, ...) sit beside the core ones.
    model_config = ConfigDict(frozen=True, extra="allow", allow_inf_nan=False)

    TYPE: ClassVar[str]

    specversion: Literal["1.0"] = "1.0"
    id: Annotated[str, Field(min_length=1, max_length=256)]
    source: Annotated[str, Field(min_length=1, max_length=1024)]
    time: UtcDatetime
    subject: str | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    traceparent: Annotated[
        str | None, Field(pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
    ] = None

    @classmethod
    def _envelope(cls, source: str, subject: str | None, time: datetime | None) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "source": source,
            "subject": subject,
            "time": time or utc_now(),
        }


class Reading(_Frozen):
    """One measurement of one metric by one sensor at one instant (UTC).

    A reading carries a ``value`` or, when the sensor failed, a ``fault`` saying why.
    """

    sensor: Id
    metric: Id
    value: float | None = None
    unit: Annotated[str, Field(max_length=32)] = ""
    time: AwareDatetime
    """Aware; normalised to UTC by the validator below."""
    fault: Annotated[str | None, Field(max_length=512)] = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        # One validator per reading does both jobs: this runs for every reading of
        # every message, and each Python call from pydantic-core costs.
        if (self.value is None) == (self.fault is None):
            raise ValueError("a reading carries exactly one of 'value' and 'fault'")
        if self.time.tzinfo is not UTC:
            self.__dict__["time"] = _to_utc(self.time)
        return self


class TelemetryData(_Frozen):
    """A batch of readings from one device, numbered by the device."""

    site: Id
    device: Id
    sequence: Annotated[int, Field(ge=0, lt=2**63)]
    """Per-device and per-outbox, strictly increasing across restarts: with ``outbox``,
    the idempotency key."""
    outbox: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    """Identifies the device's outbox: a fresh id whenever its store is created, so a
    device whose outbox was wiped (sequence back at 0) sends new data, not duplicates.
    Optional (added in 1.1; older agents omit it)."""
    readings: Annotated[tuple[Reading, ...], Field(min_length=1, max_length=MAX_READINGS_PER_EVENT)]


class TelemetryEvent(Envelope):
    """``io.sensorgate.telemetry.reported.v1``: a device reported readings."""

    TYPE: ClassVar[str] = "io.sensorgate.telemetry.reported.v1"
    type: Literal["io.sensorgate.telemetry.reported.v1"] = "io.sensorgate.telemetry.reported.v1"
    data: TelemetryData

    @classmethod
    def create(
        cls,
        *,
        site: str,
        device: str,
        sequence: int,
        readings: tuple[Reading, ...] | list[Reading],
        time: datetime | None = None,
        traceparent: str | None = None,
        outbox: str | None = None,
    ) -> TelemetryEvent:
        """Build a telemetry event with a fresh id, the device's source and now as time."""
        return cls.model_validate(
            {
                **cls._envelope(device_source(site, device), device, time),
                "traceparent": traceparent,
                "data": {
                    "site": site,
                    "device": device,
                    "sequence": sequence,
                    "readings": tuple(readings),
                    **({} if outbox is None else {"outbox": outbox}),
                },
            }
        )


class DeviceStatusData(_Frozen):
    """What a device says about itself when it comes online or goes offline."""

    site: Id
    device: Id
    agent_version: Annotated[str | None, Field(max_length=64)] = None
    reason: Annotated[str | None, Field(max_length=512)] = None
    drivers: Annotated[tuple[Annotated[str, Field(max_length=64)], ...], Field(max_length=64)] = ()
    config_hash: Annotated[str | None, Field(max_length=128)] = None
    details: dict[str, Any] = Field(default_factory=dict)
    """Free-form status figures (uptime, outbox depth, drops, heartbeat counters)."""


class _StatusEvent(Envelope):
    data: DeviceStatusData

    @classmethod
    def create(
        cls,
        *,
        site: str,
        device: str,
        time: datetime | None = None,
        **data: Any,
    ) -> Self:
        """Build a status event for one device."""
        return cls.model_validate(
            {
                **cls._envelope(device_source(site, device), device, time),
                "data": {"site": site, "device": device, **data},
            }
        )


class DeviceOnlineEvent(_StatusEvent):
    """``io.sensorgate.device.online.v1``: birth message (retained) and heartbeat."""

    TYPE: ClassVar[str] = "io.sensorgate.device.online.v1"
    type: Literal["io.sensorgate.device.online.v1"] = "io.sensorgate.device.online.v1"


class DeviceOfflineEvent(_StatusEvent):
    """``io.sensorgate.device.offline.v1``: last will, or a clean goodbye."""

    TYPE: ClassVar[str] = "io.sensorgate.device.offline.v1"
    type: Literal["io.sensorgate.device.offline.v1"] = "io.sensorgate.device.offline.v1"


class DeadLetterData(_Frozen):
    """A message the gateway could not accept, kept whole so that nothing is lost."""

    reason: DeadLetterReason
    error: Annotated[str, Field(max_length=4096)]
    topic: str
    payload_base64: str
    """The raw bytes as received, base64 (standard alphabet, no line breaks): all of
    them, or the first ``keep_bytes`` when ``payload_truncated``."""
    payload_size: Annotated[int, Field(ge=0)]
    """Size of the whole payload as received."""
    received_at: UtcDatetime
    payload_sha256: Annotated[str | None, Field(pattern=r"^[0-9a-f]{64}$")] = None
    """sha256 of the whole payload (hex), so a truncated one can still be matched."""
    payload_truncated: bool = False
    """Whether ``payload_base64`` holds only the start of the payload (a bound on what a
    dead letter keeps; see ``DEFAULT_DEADLETTER_KEEP_BYTES``)."""

    @property
    def payload(self) -> bytes:
        """The raw bytes of the rejected message."""
        return base64.b64decode(self.payload_base64)


class DeadLetterEvent(Envelope):
    """``io.sensorgate.deadletter.v1``: a message the gateway could not accept."""

    TYPE: ClassVar[str] = "io.sensorgate.deadletter.v1"
    type: Literal["io.sensorgate.deadletter.v1"] = "io.sensorgate.deadletter.v1"
    data: DeadLetterData

    @classmethod
    def create(
        cls,
        *,
        reason: DeadLetterReason,
        error: str,
        topic: str,
        payload: bytes,
        received_at: datetime | None = None,
        gateway: str = "gateway",
        keep_bytes: int | None = DEFAULT_DEADLETTER_KEEP_BYTES,
    ) -> DeadLetterEvent:
        """Build a dead letter for ``payload`` received on ``topic``.

        At most ``keep_bytes`` of the payload are kept (None: all), with its size and
        sha256, so a flood of huge bad messages cannot grow dead-letter storage without
        bound while every one stays identifiable.
        """
        now = received_at or utc_now()
        kept = payload if keep_bytes is None else payload[:keep_bytes]
        return cls.model_validate(
            {
                **cls._envelope(f"/sg/_gateway/{quote(gateway, safe='')}", None, now),
                "data": {
                    "reason": reason,
                    "error": error[:4096],
                    "topic": topic,
                    "payload_base64": base64.b64encode(kept).decode("ascii"),
                    "payload_size": len(payload),
                    "received_at": now,
                    "payload_sha256": hashlib.sha256(payload).hexdigest(),
                    "payload_truncated": len(kept) < len(payload),
                },
            }
        )


Event = TelemetryEvent | DeviceOnlineEvent | DeviceOfflineEvent | DeadLetterEvent
"""Any event this version of the contract knows."""

EVENT_FAMILIES: dict[str, int] = {
    t.TYPE.rsplit(".v", 1)[0]: int(t.TYPE.rsplit(".v", 1)[1])
    for t in (TelemetryEvent, DeviceOnlineEvent, DeviceOfflineEvent, DeadLetterEvent)
}
"""Known event families (type without the ``.vN`` suffix) and the major version spoken."""
