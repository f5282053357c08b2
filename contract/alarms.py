"""Alarm events: an alarm was raised, updated, acknowledged or cleared.

One alarm is the life of one condition on one key (site, device, series, rule), from
``raised`` to ``cleared``. Every event of that life carries the same ``alarm_id``
(deterministic: derived from the key and the time its previous alarm cleared, so a
replay or a restart names the same alarm the same way, whichever reading raises it)
and the id of the telemetry event that caused it, so an operator can walk from an
alarm back to the raw message.

Minor additions to v1 (optional fields; older readers ignore them, older events simply
lack them):

- ``detail`` (:class:`AlarmDetail`): why the detector fired: the expected value and its
  band, the component and its score (or tail probability), the history it used;
- ``folded_raises`` and ``rate_limited``: an alarm held by flapping or by the raise rate
  limit counts the occurrences folded into it instead of raising again.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, TypeAdapter, ValidationError

from contract.errors import DecodeError
from contract.events import Envelope, UtcDatetime, _Frozen, device_source
from contract.reasons import DeadLetterReason

__all__ = [
    "ALARM_EVENT_TYPES",
    "ALARM_ID_NAMESPACE",
    "AlarmAcknowledgedEvent",
    "AlarmClearedEvent",
    "AlarmData",
    "AlarmDetail",
    "AlarmEvent",
    "AlarmRaisedEvent",
    "AlarmState",
    "AlarmUpdatedEvent",
    "Severity",
    "alarm_id_for",
    "decode_alarm",
    "encode_alarm",
]

ALARM_ID_NAMESPACE = uuid.UUID("6d1f1c9e-3b51-5a4e-9a57-5e4ea1a2a3c0")
"""The uuid5 namespace of alarm ids."""


class Severity(StrEnum):
    """Alarm severities, from the most to the least urgent."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Higher is more urgent (info 0 .. critical 4)."""
        return _RANK[self]


_RANK = {
    Severity.INFO: 0,
    Severity.WARNING: 1,
    Severity.MINOR: 2,
    Severity.MAJOR: 3,
    Severity.CRITICAL: 4,
}


class AlarmState(StrEnum):
    """Where an alarm is in its life."""

    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


def alarm_id_for(site: str, device: str, series: str, rule: str, since_us: int) -> str:
    """Return the deterministic id of a key's alarm anchored at ``since_us``.

    The gateway anchors an alarm at the event time its key's previous alarm cleared (0
    for the first), so a replay names it the same way even when it raises on another
    reading (``dataflows.alarms``).
    """
    return str(
        uuid.uuid5(ALARM_ID_NAMESPACE, f"{site}\x00{device}\x00{series}\x00{rule}\x00{since_us}")
    )


class AlarmDetail(_Frozen):
    """Why a detector says what it says (every field optional; a minor addition of v1).

    Anomaly detectors fill the expected value and band, the component that fired and
    its score; the deadman fills the learnt cadence and the silence it allows.
    """

    component: Annotated[str, Field(max_length=64)] | None = None
    """What fired: ``prediction_error``, ``likelihood``, ``level_shift``, ``stuck``,
    ``silence``, ..."""
    score: float | None = None
    """The component's score against its own threshold (above 1 fires)."""
    z: float | None = None
    """The prediction error in standard deviations (RMS, seasonal)."""
    likelihood: float | None = None
    """The short error level in standard deviations above its history."""
    tail_probability: float | None = None
    """The one-sided Gaussian tail probability of ``likelihood``."""
    shift: float | None = None
    """One-sided error run (level shift) in standard deviations beyond its history."""
    expected: float | None = None
    """The value the detector expected."""
    band_low: float | None = None
    """The low edge of the band of values the detector accepts."""
    band_high: float | None = None
    """The high edge of that band."""
    baseline: float | None = None
    """The slow baseline the condition is measured from while it continues."""
    history_readings: Annotated[int, Field(ge=0)] | None = None
    """Readings of history the detector's statistics weigh (the window it used)."""
    readings_since_fired: Annotated[int, Field(ge=0)] | None = None
    """Readings since the component last fired (0: this reading fired)."""
    cadence_s: float | None = None
    """Deadman: the learnt median interval between arrivals."""
    silence_s: float | None = None
    """Deadman: the silence allowed before the device counts as silent."""


class AlarmData(_Frozen):
    """What every alarm event says about its alarm."""

    alarm_id: Annotated[str, Field(min_length=1, max_length=64)]
    site: str
    device: str
    sensor: str = "*"
    """The sensor of the series, or ``*`` for a device-level alarm (deadman, pattern)."""
    metric: str = "*"
    """The metric of the series, or ``*`` for a device-level alarm (deadman, pattern)."""
    rule: Annotated[str, Field(min_length=1, max_length=128)]
    kind: str = ""
    """The kind of rule that raised it (threshold, rate, adaptive, deadman, ...)."""
    severity: Severity
    state: AlarmState
    value: float | None = None
    threshold: float | None = None
    message: Annotated[str, Field(max_length=1024)] = ""
    event_time: UtcDatetime
    """Event time of the transition (the time of the causing reading, or of the check)."""
    raised_at: UtcDatetime
    cause_event_id: str | None = None
    """Id of the telemetry (or status) event whose reading caused this transition."""
    cause_reading: str | None = None
    """``sensor/metric`` of the causing reading, when there is one."""
    acknowledged_by: str | None = None
    acknowledged_at: UtcDatetime | None = None
    flapping: bool = False
    detail: AlarmDetail | None = None
    """Why the detector fired (minor addition; None where the rule says nothing more)."""
    folded_raises: Annotated[int, Field(ge=0)] | None = None
    """Occurrences folded into this alarm while it was held (flapping or rate limited)
    instead of raising new alarms (minor addition; None: none)."""
    rate_limited: bool | None = None
    """This alarm was the last raise its key may make within the rate window: it is held
    until the window allows another raise (minor addition; None: not limited)."""


class _AlarmEvent(Envelope):
    data: AlarmData

    @classmethod
    def create(
        cls,
        *,
        time: datetime | None = None,
        traceparent: str | None = None,
        **data: Any,
    ) -> Self:
        """Build the event; its id is derived from the alarm id, type and event time."""
        event_time = data["event_time"]
        body = AlarmData.model_validate(data)
        event_id = uuid.uuid5(
            ALARM_ID_NAMESPACE, f"{body.alarm_id}\x00{cls.TYPE}\x00{body.event_time.isoformat()}"
        )
        return cls.model_validate(
            {
                "id": str(event_id),
                "source": device_source(body.site, body.device),
                "subject": body.device,
                "time": time or event_time,
                "traceparent": traceparent,
                "data": body,
            }
        )


class AlarmRaisedEvent(_AlarmEvent):
    """``io.sensorgate.alarm.raised.v1``: a condition held long enough to raise an alarm."""

    TYPE: ClassVar[str] = "io.sensorgate.alarm.raised.v1"
    type: Literal["io.sensorgate.alarm.raised.v1"] = "io.sensorgate.alarm.raised.v1"


class AlarmUpdatedEvent(_AlarmEvent):
    """``io.sensorgate.alarm.updated.v1``: an active alarm changed or occurred again.

    Severity changes, and occurrences folded into a held alarm (``folded_raises``).
    """

    TYPE: ClassVar[str] = "io.sensorgate.alarm.updated.v1"
    type: Literal["io.sensorgate.alarm.updated.v1"] = "io.sensorgate.alarm.updated.v1"


class AlarmAcknowledgedEvent(_AlarmEvent):
    """``io.sensorgate.alarm.acknowledged.v1``: someone acknowledged an active alarm."""

    TYPE: ClassVar[str] = "io.sensorgate.alarm.acknowledged.v1"
    type: Literal["io.sensorgate.alarm.acknowledged.v1"] = "io.sensorgate.alarm.acknowledged.v1"


class AlarmClearedEvent(_AlarmEvent):
    """``io.sensorgate.alarm.cleared.v1``: the condition ended; the alarm is over."""

    TYPE: ClassVar[str] = "io.sensorgate.alarm.cleared.v1"
    type: Literal["io.sensorgate.alarm.cleared.v1"] = "io.sensorgate.alarm.cleared.v1"


AlarmEvent = AlarmRaisedEvent | AlarmUpdatedEvent | AlarmAcknowledgedEvent | AlarmClearedEvent
"""Any alarm event."""

ALARM_EVENT_TYPES: tuple[type[_AlarmEvent], ...] = (
    AlarmRaisedEvent,
    AlarmUpdatedEvent,
    AlarmAcknowledgedEvent,
    AlarmClearedEvent,
)


_ANY_ALARM: TypeAdapter[AlarmEvent] = TypeAdapter(
    Annotated[AlarmEvent, Field(discriminator="type")]
)


def encode_alarm(event: AlarmEvent) -> bytes:
    """Return the structured-mode CloudEvents JSON of an alarm event as UTF-8 bytes."""
    return event.model_dump_json(exclude_none=True).encode("utf-8")


def decode_alarm(raw: bytes | str) -> AlarmEvent:
    """Decode an alarm event; raises :class:`~contract.errors.DecodeError` if it is not one."""
    try:
        return _ANY_ALARM.validate_json(raw)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(event)'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:3]
        )
        raise DecodeError(DeadLetterReason.SCHEMA_VIOLATION, detail) from None
