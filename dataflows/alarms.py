"""The alarm state machine of one key (site, device, series, rule).

States and transitions (times are event times, integer microseconds)::

    idle ──condition──▶ pending ──held for `for`──▶ ACTIVE ──raised event
      ▲                    │                          │  severity changes ─▶ updated
      └──── condition off ─┘                          │  acknowledge ─▶ acknowledged
                                                      ▼
                         condition off for `clear_for` (and `min_duration` since the
                         raise; and the flap hold-off while flapping) ─▶ cleared ─▶ idle

- At most one active alarm per key. Its id is deterministic (uuid5 of the key and the
  raise time), so a replay after a restart names it the same way.
- Hysteresis on the value is the detector's (a separate clear level); the machine
  adds hysteresis in time: ``for`` before raising, ``clear_for`` before clearing,
  ``min_duration`` for the life of an alarm.
- Flapping: when the key raised ``flap_count`` times within ``flap_window``, that raise
  is marked flapping and its alarm clears only once the condition has been off for a
  whole ``flap_window``, so a chattering condition keeps one alarm instead of a storm
  of raise/clear pairs.
- An update older than the last one taken is ignored (out-of-order or re-delivered
  readings): a restart that replays data neither raises twice nor loses a clear.
- ``snapshot()``/``restore()`` carry the whole state as plain data.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from contract.alarms import (
    AlarmAcknowledgedEvent,
    AlarmClearedEvent,
    AlarmEvent,
    AlarmRaisedEvent,
    AlarmState,
    AlarmUpdatedEvent,
    Severity,
    alarm_id_for,
)
from dataflows.detectors.base import Signal

__all__ = ["AlarmKey", "AlarmMachine", "AlarmPolicy", "Cause", "us_to_dt"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us_to_dt(t_us: int) -> datetime:
    """Microseconds since the epoch as an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=t_us)


@dataclass(frozen=True, slots=True)
class AlarmKey:
    """What an alarm is about: ``sensor``/``metric`` are ``*`` for device-level rules."""

    site: str
    device: str
    sensor: str
    metric: str
    rule: str

    @property
    def series(self) -> str:
        """``sensor/metric`` (``*`` for device-level)."""
        return "*" if self.sensor == "*" and self.metric == "*" else f"{self.sensor}/{self.metric}"


@dataclass(frozen=True, slots=True)
class AlarmPolicy:
    """How a rule's condition becomes an alarm."""

    severity: Severity = Severity.WARNING
    kind: str = ""
    for_us: int = 0
    clear_for_us: int = 0
    min_duration_us: int = 0
    flap_count: int = 4
    """Raises within ``flap_window_us`` that mark the alarm flapping (0: never)."""
    flap_window_us: int = 600_000_000


@dataclass(frozen=True, slots=True)
class Cause:
    """The event (and reading) behind a transition, for traceability."""

    event_id: str | None = None
    reading: str | None = None
    traceparent: str | None = None


class AlarmMachine:
    """The alarm life of one key (see the module docstring)."""

    __slots__ = (
        "_ack_at",
        "_ack_by",
        "_alarm_id",
        "_clear_since",
        "_flapping",
        "_last_t",
        "_pending_since",
        "_raised_us",
        "_raises",
        "_severity",
        "key",
        "policy",
    )

    def __init__(self, key: AlarmKey, policy: AlarmPolicy) -> None:
        self.key = key
        self.policy = policy
        self._last_t: int | None = None
        self._pending_since: int | None = None
        self._alarm_id: str | None = None
        self._raised_us = 0
        self._severity = policy.severity
        self._clear_since: int | None = None
        self._ack_by: str | None = None
        self._ack_at: datetime | None = None
        self._flapping = False
        self._raises: deque[int] = deque(maxlen=max(1, policy.flap_count))

    @property
    def active(self) -> bool:
        """Whether an alarm is raised and not cleared."""
        return self._alarm_id is not None

    @property
    def idle(self) -> bool:
        """Whether no alarm is active or pending: an inactive signal would change nothing."""
        return self._alarm_id is None and self._pending_since is None

    @property
    def alarm_id(self) -> str | None:
        """The id of the active alarm, if any."""
        return self._alarm_id

    @property
    def severity(self) -> Severity:
        """The current severity (the rule's until an escalation)."""
        return self._severity

    @property
    def flapping(self) -> bool:
        """Whether the active alarm is held as flapping."""
        return self._flapping

    @property
    def last_us(self) -> int | None:
        """Time of the last update taken."""
        return self._last_t

    def set_policy(self, policy: AlarmPolicy) -> None:
        """Use a new policy (rules reloaded); the alarm and its id are kept."""
        self.policy = policy
        if policy.flap_count != self._raises.maxlen:
            self._raises = deque(self._raises, maxlen=max(1, policy.flap_count))

    def update(
        self, t_us: int, signal: Signal | None, cause: Cause | None = None
    ) -> list[AlarmEvent]:
        """Take the detector's signal at ``t_us``; return the alarm events it causes."""
        if signal is None:
            return []
        if self._last_t is not None and t_us < self._last_t:
            return []  # out of order: the state already moved past this time
        self._last_t = t_us
        if not signal.active and self._alarm_id is None:  # the common, quiet case
            self._pending_since = None
            return []
        cause = cause or Cause()
        policy = self.policy
        if signal.active:
            self._clear_since = None
            if self._alarm_id is not None:
                return self._maybe_update(t_us, signal, cause)
            if self._pending_since is None:
                self._pending_since = t_us
            if t_us - self._pending_since >= policy.for_us:
                return self._raise(t_us, signal, cause)
            return []
        self._pending_since = None
        if self._alarm_id is None:
            return []
        if self._clear_since is None:
            self._clear_since = t_us
        hold = policy.flap_window_us if self._flapping else policy.clear_for_us
        if t_us - self._clear_since >= hold and t_us - self._raised_us >= policy.min_duration_us:
            return [self._clear(t_us, signal, cause, "condition ended")]
        return []

    def _raise(self, t_us: int, signal: Signal, cause: Cause) -> list[AlarmEvent]:
        key, policy = self.key, self.policy
        self._pending_since = None
        self._raised_us = t_us
        self._alarm_id = alarm_id_for(key.site, key.device, key.series, key.rule, t_us)
        self._severity = signal.severity or policy.severity
        self._ack_by = self._ack_at = None
        self._raises.append(t_us)
        window_start = t_us - policy.flap_window_us
        self._flapping = (
            policy.flap_count > 0
            and len(self._raises) >= policy.flap_count
            and self._raises[0] >= window_start
        )
        message = signal.message
        if self._flapping:
            message = f"{message} (flapping: {len(self._raises)} raises within the flap window)"
        return [self._event(AlarmRaisedEvent, t_us, signal, cause, AlarmState.ACTIVE, message)]

    def _maybe_update(self, t_us: int, signal: Signal, cause: Cause) -> list[AlarmEvent]:
        severity = signal.severity or self.policy.severity
        if severity == self._severity:
            return []
        self._severity = severity
        state = AlarmState.ACKNOWLEDGED if self._ack_by else AlarmState.ACTIVE
        message = f"severity now {severity.value}: {signal.message}"
        return [self._event(AlarmUpdatedEvent, t_us, signal, cause, state, message)]

    def _clear(self, t_us: int, signal: Signal, cause: Cause, why: str) -> AlarmEvent:
        event = self._event(AlarmClearedEvent, t_us, signal, cause, AlarmState.CLEARED, why)
        self._alarm_id = None
        self._clear_since = self._pending_since = None
        self._ack_by = self._ack_at = None
        self._flapping = False
        self._severity = self.policy.severity
        return event

    def force_clear(self, t_us: int, why: str, cause: Cause | None = None) -> list[AlarmEvent]:
        """Clear the active alarm now (its rule was removed, or its device came back)."""
        if self._alarm_id is None:
            self._pending_since = None
            return []
        t_us = max(t_us, self._last_t or t_us)
        self._last_t = t_us
        return [self._clear(t_us, Signal(False), cause or Cause(), why)]

    def acknowledge(self, by: str, at: datetime) -> list[AlarmEvent]:
        """Acknowledge the active alarm (kept until it clears); nothing if none is active."""
        if self._alarm_id is None:
            return []
        self._ack_by, self._ack_at = by, at
        t_us = self._last_t or self._raised_us
        return [
            self._event(
                AlarmAcknowledgedEvent,
                t_us,
                Signal(True),
                Cause(),
                AlarmState.ACKNOWLEDGED,
                f"acknowledged by {by}",
                time=at,
            )
        ]

    def _event(
        self,
        cls: type[AlarmEvent],
        t_us: int,
        signal: Signal,
        cause: Cause,
        state: AlarmState,
        message: str,
        time: datetime | None = None,
    ) -> AlarmEvent:
        key = self.key
        assert self._alarm_id is not None
        return cls.create(
            time=time,
            traceparent=cause.traceparent,
            alarm_id=self._alarm_id,
            site=key.site,
            device=key.device,
            sensor=key.sensor,
            metric=key.metric,
            rule=key.rule,
            kind=self.policy.kind,
            severity=self._severity,
            state=state,
            value=_finite(signal.value),
            threshold=_finite(signal.threshold),
            message=message[:1024],
            event_time=us_to_dt(t_us),
            raised_at=us_to_dt(self._raised_us),
            cause_event_id=cause.event_id,
            cause_reading=cause.reading,
            acknowledged_by=self._ack_by,
            acknowledged_at=self._ack_at,
            flapping=self._flapping,
        )

    def snapshot(self) -> dict[str, Any]:
        """Return the state as plain data."""
        return {
            "last": self._last_t,
            "pending": self._pending_since,
            "alarm_id": self._alarm_id,
            "raised": self._raised_us,
            "severity": self._severity.value,
            "clear_since": self._clear_since,
            "ack_by": self._ack_by,
            "ack_at": None if self._ack_at is None else self._ack_at.isoformat(),
            "flapping": self._flapping,
            "raises": list(self._raises),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot`."""
        self._last_t = state["last"]
        self._pending_since = state["pending"]
        self._alarm_id = state["alarm_id"]
        self._raised_us = state["raised"]
        self._severity = Severity(state["severity"])
        self._clear_since = state["clear_since"]
        self._ack_by = state["ack_by"]
        self._ack_at = None if state["ack_at"] is None else datetime.fromisoformat(state["ack_at"])
        self._flapping = state["flapping"]
        self._raises = deque(state["raises"], maxlen=max(1, self.policy.flap_count))


def _finite(value: float | None) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return float(value)
