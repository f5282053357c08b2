"""What an adapter makes of one foreign message: telemetry columns, status, errors, commands.

Plain dataclasses, built per message (foreign payloads are small). A message may touch
several devices (a Telegraf batch), so telemetry comes as one :class:`Telemetry` per
device, each with its readings as parallel lists: what the gateway's columnar decode
stage takes without building a pydantic object per reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contract import DeadLetterReason, DeviceOfflineEvent, DeviceOnlineEvent

__all__ = ["AdapterError", "AdapterResult", "Command", "StatusChange", "Telemetry"]


@dataclass(slots=True)
class Telemetry:
    """The readings of one device from one message, as parallel lists.

    ``sequence`` is the per-device idempotency key the adapter synthesised and
    ``event_id`` a deterministic id (see :mod:`dataflows.adapters.identity`).
    """

    site: str
    device: str
    sequence: int
    event_id: str
    sensor: list[str] = field(default_factory=list)
    metric: list[str] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    unit: list[str] = field(default_factory=list)
    t_us: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.value)

    def add(self, sensor: str, metric: str, value: float, unit: str, t_us: int) -> None:
        """Append one reading."""
        self.sensor.append(sensor)
        self.metric.append(metric)
        self.value.append(value)
        self.unit.append(unit)
        self.t_us.append(t_us)

    def rows(self) -> list[tuple[str, str, float, str, int]]:
        """Return the readings as (sensor, metric, value, unit, t_us) tuples (for tests)."""
        return list(zip(self.sensor, self.metric, self.value, self.unit, self.t_us, strict=True))


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A device came online or went offline, as its family says (LWT, availability...).

    ``t_us`` is the arrival time: the gateway dates status by arrival (a last will is
    built at connect time and published by the broker when the link dies).
    """

    site: str
    device: str
    online: bool
    t_us: int
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_event(self) -> DeviceOnlineEvent | DeviceOfflineEvent:
        """Return the contract's status event (pydantic: rare, per event)."""
        cls = DeviceOnlineEvent if self.online else DeviceOfflineEvent
        return cls.create(
            site=self.site,
            device=self.device,
            time=datetime.fromtimestamp(self.t_us / 1_000_000, UTC),
            reason=self.reason,
            details=dict(self.details),
        )


@dataclass(frozen=True, slots=True)
class AdapterError:
    """A message, or part of one, that an adapter could not map: a dead letter."""

    adapter: str
    kind: str
    message: str

    reason = DeadLetterReason.ADAPTER_ERROR

    @property
    def text(self) -> str:
        """The dead letter's ``error`` text: adapter name, family and what went wrong."""
        return f"adapter {self.adapter!r} ({self.kind}): {self.message}"


@dataclass(frozen=True, slots=True)
class Command:
    """A message the adapter asks the gateway to publish (a Sparkplug rebirth request)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    reason: str = ""


@dataclass(slots=True)
class AdapterResult:
    """Everything one foreign message became.

    Telemetry and errors can come together: a Telegraf message with one bad line of
    three keeps the two good lines and files the message as a dead letter naming the
    bad one. ``skipped`` counts values that are not readings by design (strings,
    datasets, templates, excluded fields); ``ignored`` says why a whole message was
    deliberately not mapped (a Zigbee2MQTT ``/set`` topic, a stale Sparkplug NDEATH),
    so that the gateway counts it rather than drops it silently.
    """

    telemetry: list[Telemetry] = field(default_factory=list)
    status: list[StatusChange] = field(default_factory=list)
    errors: list[AdapterError] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    skipped: int = 0
    ignored: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def readings(self) -> int:
        """Readings over all devices."""
        return sum(len(t) for t in self.telemetry)

    @property
    def ok(self) -> bool:
        """No error."""
        return not self.errors

    def keep(self, tel: Telemetry, empty: str) -> None:
        """Keep ``tel`` if it holds readings; else say ``empty`` (unless values were skipped)."""
        if len(tel):
            self.telemetry.append(tel)
        elif not self.skipped:
            self.ignored = empty
