"""The events of SensorGate, as CloudEvents 1.0 structured JSON envelopes.

Every event is immutable and versioned: its ``type`` ends in ``.v{major}``. Newer
minor versions may add fields, which older readers ignore; a new major version is a
new type. Build events with the ``create`` class methods, which fill in the id, the
source and the time.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import quote

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from contract.ids import Id
from contract.reasons import DeadLetterReason

__all__ = [
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
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, normalised to UTC; naive datetimes are refused."""

MAX_READINGS_PER_EVENT = 10_000


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
            self.__dict__["time"] = self.time.astimezone(UTC)
        return self


class TelemetryData(_Frozen):
    """A batch of readings from one device, numbered by the device."""

    site: Id
    device: Id
    sequence: Annotated[int, Field(ge=0, lt=2**63)]
    """Per-device, strictly increasing across restarts: the idempotency key."""
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
                },
            }
        )


class DeviceStatusData(_Frozen):
    """What a device says about itself when it comes online or goes offline."""

    site: Id
    device: Id
    agent_version: str | None = None
    reason: str | None = None
    drivers: tuple[str, ...] = ()
    config_hash: str | None = None
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
    """The raw bytes as received, base64 (standard alphabet, no line breaks)."""
    payload_size: Annotated[int, Field(ge=0)]
    received_at: UtcDatetime

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
    ) -> DeadLetterEvent:
        """Build a dead letter for ``payload`` received on ``topic``."""
        now = received_at or utc_now()
        return cls.model_validate(
            {
                **cls._envelope(f"/sg/_gateway/{quote(gateway, safe='')}", None, now),
                "data": {
                    "reason": reason,
                    "error": error[:4096],
                    "topic": topic,
                    "payload_base64": base64.b64encode(payload).decode("ascii"),
                    "payload_size": len(payload),
                    "received_at": now,
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
