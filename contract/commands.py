"""Operator commands sent to the gateway about one device.

Commands travel on ``{prefix}/{site}/{device}/commands`` (QoS 1, not retained) as
CloudEvents structured JSON, like every other message. The gateway routes a command
to the device's key in its flow, so it reaches the one place that holds the device's
alarm state. Today there is one command:

``io.sensorgate.alarm.acknowledge.v1``
    ``data = {"site", "device", "alarm_id", "by", "note"}``; the envelope ``time`` is
    when the operator acknowledged. The alarm stays acknowledged until it clears.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field

from contract.events import Envelope, _Frozen, device_source
from contract.ids import Id

__all__ = ["AcknowledgeAlarmCommand", "AcknowledgeAlarmData", "Command"]


class AcknowledgeAlarmData(_Frozen):
    """Who acknowledges which alarm of which device."""

    site: Id
    device: Id
    alarm_id: Annotated[str, Field(min_length=1, max_length=64)]
    by: Annotated[str, Field(min_length=1, max_length=128)]
    note: Annotated[str, Field(max_length=1024)] = ""


class AcknowledgeAlarmCommand(Envelope):
    """``io.sensorgate.alarm.acknowledge.v1``: an operator acknowledges an active alarm."""

    TYPE: ClassVar[str] = "io.sensorgate.alarm.acknowledge.v1"
    type: Literal["io.sensorgate.alarm.acknowledge.v1"] = "io.sensorgate.alarm.acknowledge.v1"
    data: AcknowledgeAlarmData

    @classmethod
    def create(
        cls,
        *,
        site: str,
        device: str,
        alarm_id: str,
        by: str,
        note: str = "",
        time: datetime | None = None,
    ) -> Self:
        """Build the command (``time``: when the operator acknowledged; default now)."""
        return cls.model_validate(
            {
                **cls._envelope(device_source(site, device), device, time),
                "data": {
                    "site": site,
                    "device": device,
                    "alarm_id": alarm_id,
                    "by": by,
                    "note": note,
                },
            }
        )


Command = AcknowledgeAlarmCommand
"""Any command the gateway understands."""
