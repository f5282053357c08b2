"""The retained summary of a device's active alarms: ``{prefix}/{site}/{device}/alarms/active``.

The alarm sink publishes it (retained, QoS 1) after every change of a device's
alarms, an empty list once none is active, so a client that subscribes late gets the
current state at once, without replaying history. The document::

    {"type": "io.sensorgate.alarm.active.v1", "site": "plant", "device": "pump-1",
     "alarms": [AlarmData, ...]}

Its topic is the contract's (:meth:`contract.TopicScheme.alarms_active`, last level
:data:`contract.topics.ACTIVE_SEGMENT`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from contract import TopicScheme
from contract.alarms import AlarmData
from contract.errors import DecodeError, TopicError
from contract.ids import check_id
from contract.reasons import DeadLetterReason
from contract.topics import ACTIVE_SEGMENT, TopicKind

__all__ = [
    "ACTIVE_SUFFIX",
    "ACTIVE_TYPE",
    "ActiveSummary",
    "active_topic",
    "alarm_filters",
    "decode_summary",
    "summary_device",
]

ACTIVE_SUFFIX = ACTIVE_SEGMENT
"""Last level of the retained summary topic ``{prefix}/{site}/{device}/alarms/active``."""

ACTIVE_TYPE = "io.sensorgate.alarm.active.v1"
"""The ``type`` of the retained summary document."""


class ActiveSummary(BaseModel):
    """One device's active (raised or acknowledged) alarms, as retained on the broker."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["io.sensorgate.alarm.active.v1"] = "io.sensorgate.alarm.active.v1"
    site: str
    device: str
    alarms: tuple[AlarmData, ...] = ()


def active_topic(topics: TopicScheme, site: str, device: str) -> str:
    """Return the retained topic of a device's active alarms."""
    return topics.alarms_active(site, device)


def alarm_filters(
    topics: TopicScheme, *, site: str | None = None, device: str | None = None
) -> tuple[str, str]:
    """Return the filters of the alarm events and of the summaries (one site or device, or all).

    The ids are checked by the contract's rules; an unset level is the ``+`` wildcard.
    """
    site_level = "+" if site is None else check_id("site", site)
    device_level = "+" if device is None else check_id("device", device)
    events = f"{topics.prefix}/{site_level}/{device_level}/{TopicKind.ALARMS.value}"
    return events, f"{events}/{ACTIVE_SUFFIX}"


def summary_device(topics: TopicScheme, topic: str) -> tuple[str, str]:
    """Return ``(site, device)`` of a summary topic; raise :class:`TopicError` otherwise."""
    head, sep, last = topic.rpartition("/")
    if not sep or last != ACTIVE_SUFFIX:
        raise TopicError(f"expected a topic ending in /alarms/{ACTIVE_SUFFIX}; got {topic!r}")
    parsed = topics.parse(head)
    if parsed.kind is not TopicKind.ALARMS:
        raise TopicError(f"expected a topic ending in /alarms/{ACTIVE_SUFFIX}; got {topic!r}")
    return parsed.site, parsed.device


def decode_summary(raw: bytes) -> ActiveSummary:
    """Decode a summary; raise :class:`DecodeError` saying what is wrong."""
    try:
        return ActiveSummary.model_validate_json(raw)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(summary)'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:3]
        )
        raise DecodeError(DeadLetterReason.SCHEMA_VIOLATION, detail) from None
