"""The alarm state machine of one key (site, device, series, rule).

States and transitions (times are event times, integer microseconds)::

    idle ──condition──▶ pending ──held for `for`──▶ ACTIVE ──raised event
      ▲                    │                          │  severity changes ─▶ updated
      └──── condition off ─┘                          │  occurs again while held ─▶ updated
                                                      │  acknowledge ─▶ acknowledged
                                                      ▼
                         condition off for `clear_for` (and `min_duration` since the
                         raise; and the hold of a flapping or rate-limited alarm)
                         ─▶ cleared ─▶ idle

- At most one active alarm per key. Its id is deterministic: uuid5 of the key and the
  event time the key's previous alarm cleared (0 for the first alarm of a machine).
  Not the raise time: after a crash the broker may redeliver the readings that raised
  it behind newer ones (a cluster member's queue comes back when its session
  reconnects), so the replay can raise on a later reading; the anchor restored from
  the snapshot is the same, and so is the id. A machine made afresh (a new rule, a
  device evicted and back) starts at 0 again, so its first alarm reuses the id of that
  key's first alarm of an earlier life, long cleared; ``raised_at`` tells them apart.
- Hysteresis on the value is the detector's (a separate clear level); the machine
  adds hysteresis in time: ``for`` before raising, ``clear_for`` before clearing,
  ``min_duration`` for the life of an alarm.
- Flapping: when the key raised ``flap_count`` times within ``flap_window``, that raise
  is marked flapping and its alarm clears only once the condition has been off for a
  whole ``flap_window``, so a chattering condition keeps one alarm instead of a storm
  of raise/clear pairs.
- Rate limit: a key raises at most ``max_raises`` alarms within ``raise_window`` (6 an
  hour by default). The raise that uses up the budget is marked ``rate_limited`` and
  its alarm is held (not cleared) until the window allows another raise.
- Folding: while an alarm is held (flapping or rate limited), a condition that ended
  and comes back (held ``for`` again) is a new occurrence that would have raised: it is
  counted in the alarm's ``folded_raises`` instead, announced by an ``updated`` event
  (at most one per :data:`FOLD_NOTICE_US` per key; the clear carries the final count).
- Explanations: :meth:`AlarmMachine.update` takes an optional ``explain`` callable that
  returns the :class:`~contract.alarms.AlarmDetail` of the signal; it is called only
  when the update makes an event, so the quiet path costs nothing.
- An update older than the last one taken is ignored (out-of-order or re-delivered
  readings): a restart that replays data neither raises twice nor loses a clear.
- ``snapshot()``/``restore()`` carry the whole state as plain data.

Over 400 lines, on purpose: this is one state machine whose transitions share all of
its state; split across modules they would read apart from each other. Its value types
and pure helpers are in :mod:`dataflows.alarm_types`.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Any

from contract.alarms import (
    AlarmAcknowledgedEvent,
    AlarmClearedEvent,
    AlarmDetail,
    AlarmEvent,
    AlarmRaisedEvent,
    AlarmState,
    AlarmUpdatedEvent,
    Severity,
    alarm_id_for,
)
from dataflows.alarm_types import (
    AlarmKey,
    AlarmPolicy,
    Cause,
    Explain,
    finite,
    higher_severity,
    raise_history,
    span_text,
    us_to_dt,
)
from dataflows.detectors.base import Signal

__all__ = [
    "FOLD_NOTICE_US",
    "AlarmKey",
    "AlarmMachine",
    "AlarmPolicy",
    "Cause",
    "Explain",
    "us_to_dt",
]

FOLD_NOTICE_US = 60_000_000
"""At most one ``updated`` event per key this often announces folded occurrences."""


class AlarmMachine:
    """The alarm life of one key (see the module docstring)."""

    __slots__ = (
        "_ack_at",
        "_ack_by",
        "_alarm_id",
        "_announced",
        "_clear_since",
        "_detail",
        "_ended",
        "_flapping",
        "_folded",
        "_last_t",
        "_limited",
        "_pending_since",
        "_raised_us",
        "_raises",
        "_release_us",
        "_severity",
        "_since_us",
        "key",
        "policy",
    )

    def __init__(self, key: AlarmKey, policy: AlarmPolicy) -> None:
        self.key = key
        self.policy = policy
        self._last_t: int | None = None
        self._since_us = 0
        """The id's anchor: when the previous alarm cleared (0: none yet)."""
        self._pending_since: int | None = None
        """Idle: since when the condition holds. Active: since when it is back (held)."""
        self._alarm_id: str | None = None
        self._raised_us = 0
        self._severity = policy.severity
        self._clear_since: int | None = None
        self._ack_by: str | None = None
        self._ack_at: datetime | None = None
        self._flapping = False
        self._limited = False
        self._release_us = 0
        """Rate limited: when the raise window allows the next raise."""
        self._ended = False
        """The held alarm's condition was off long enough that it would have cleared."""
        self._folded = 0
        self._announced: int | None = None
        """When folded occurrences were last announced (an ``updated`` event)."""
        self._detail: AlarmDetail | None = None
        self._raises: deque[int] = deque(maxlen=raise_history(policy))

    @property
    def active(self) -> bool:
        """Whether an alarm is raised and not cleared."""
        return self._alarm_id is not None

    @property
    def idle(self) -> bool:
        """Whether no alarm is active or pending: an inactive signal would change nothing."""
        return self._alarm_id is None and self._pending_since is None

    @property
    def rearmed(self) -> bool:
        """Whether the alarm is held (flapping, rate limited) after its condition ended.

        A new occurrence of the condition is then folded into it: time-driven checks
        (deadman) should keep looking.
        """
        return self._alarm_id is not None and self._ended

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
    def rate_limited(self) -> bool:
        """Whether the active alarm used up its key's raise budget (held until it frees)."""
        return self._limited

    @property
    def folded(self) -> int:
        """Occurrences folded into the active alarm."""
        return self._folded

    @property
    def last_us(self) -> int | None:
        """Time of the last update taken."""
        return self._last_t

    def set_policy(self, policy: AlarmPolicy) -> None:
        """Use a new policy (rules reloaded); the alarm and its id are kept."""
        self.policy = policy
        if raise_history(policy) != self._raises.maxlen:
            self._raises = deque(self._raises, maxlen=raise_history(policy))

    def update(
        self,
        t_us: int,
        signal: Signal | None,
        cause: Cause | None = None,
        explain: Explain | None = None,
    ) -> list[AlarmEvent]:
        """Take the detector's signal at ``t_us``; return the alarm events it causes.

        ``explain`` gives the signal's detail; it is called only if an event is made.
        """
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
                return self._again(t_us, signal, cause, explain)
            if self._pending_since is None:
                self._pending_since = t_us
            if t_us - self._pending_since >= policy.for_us:
                return self._raise(t_us, signal, cause, explain)
            return []
        self._pending_since = None
        if self._clear_since is None:
            self._clear_since = t_us
        off = t_us - self._clear_since
        if off < policy.clear_for_us or t_us - self._raised_us < policy.min_duration_us:
            return []
        flap_held = self._flapping and off < policy.flap_window_us
        if flap_held or (self._limited and t_us < self._release_us):
            self._ended = True  # it would have cleared: a return is a new occurrence
            return []
        return [self._clear(t_us, signal, cause, "condition ended", explain)]

    def _raise(
        self, t_us: int, signal: Signal, cause: Cause, explain: Explain | None
    ) -> list[AlarmEvent]:
        key, policy = self.key, self.policy
        self._pending_since = None
        self._raised_us = t_us
        self._alarm_id = alarm_id_for(key.site, key.device, key.series, key.rule, self._since_us)
        self._severity = signal.severity or policy.severity
        self._ack_by = self._ack_at = None
        self._ended = False
        self._folded = 0
        self._announced = None
        raises = self._raises
        raises.append(t_us)
        n = len(raises)
        self._flapping = (
            policy.flap_count > 0
            and n >= policy.flap_count
            and raises[-policy.flap_count] >= t_us - policy.flap_window_us
        )
        self._limited = (
            policy.max_raises > 0
            and n >= policy.max_raises
            and raises[-policy.max_raises] >= t_us - policy.raise_window_us
        )
        if self._limited:
            self._release_us = raises[-policy.max_raises] + policy.raise_window_us
        message = signal.message
        if self._flapping:
            message = f"{message} (flapping: {policy.flap_count} raises within the flap window)"
        if self._limited:
            message = (
                f"{message} (rate limited: {policy.max_raises} raises within"
                f" {span_text(policy.raise_window_us)}; further occurrences are counted in this"
                f" alarm until {us_to_dt(self._release_us):%H:%M:%S} UTC)"
            )
        self._detail = explain() if explain is not None else None
        return [self._event(AlarmRaisedEvent, t_us, signal, cause, AlarmState.ACTIVE, message)]

    def _again(
        self, t_us: int, signal: Signal, cause: Cause, explain: Explain | None
    ) -> list[AlarmEvent]:
        """Take the condition while the alarm is active: a fold, an escalation or nothing."""
        if self._ended:
            if self._pending_since is None:
                self._pending_since = t_us
            if t_us - self._pending_since >= self.policy.for_us:
                self._pending_since = None
                self._ended = False
                self._folded += 1
                if self._announced is None or t_us - self._announced >= FOLD_NOTICE_US:
                    self._announced = t_us
                    self._severity = higher_severity(self._severity, signal.severity)
                    held = "rate limited" if self._limited else "flapping"
                    message = (
                        f"occurred again, {self._folded} occurrence(s) folded into this alarm"
                        f" ({held}): {signal.message}"
                    )
                    return [self._updated(t_us, signal, cause, message, explain)]
        # Escalate at once, never step down while active: a condition that wavers
        # between two severities would otherwise send an update every few readings.
        severity = signal.severity or self.policy.severity
        if severity.rank <= self._severity.rank:
            return []
        self._severity = severity
        message = f"severity now {severity.value}: {signal.message}"
        return [self._updated(t_us, signal, cause, message, explain)]

    def _updated(
        self, t_us: int, signal: Signal, cause: Cause, message: str, explain: Explain | None
    ) -> AlarmEvent:
        if explain is not None:
            self._detail = explain() or self._detail
        state = AlarmState.ACKNOWLEDGED if self._ack_by else AlarmState.ACTIVE
        return self._event(AlarmUpdatedEvent, t_us, signal, cause, state, message)

    def _clear(
        self, t_us: int, signal: Signal, cause: Cause, why: str, explain: Explain | None = None
    ) -> AlarmEvent:
        if self._folded:
            why = f"{why} ({self._folded} more occurrence(s) were folded into this alarm)"
        self._detail = explain() if explain is not None else None
        event = self._event(AlarmClearedEvent, t_us, signal, cause, AlarmState.CLEARED, why)
        self._alarm_id = None
        self._since_us = t_us
        self._clear_since = self._pending_since = None
        self._ack_by = self._ack_at = None
        self._flapping = self._limited = self._ended = False
        self._folded = 0
        self._announced = None
        self._detail = None
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
            value=finite(signal.value),
            threshold=finite(signal.threshold),
            message=message[:1024],
            event_time=us_to_dt(t_us),
            raised_at=us_to_dt(self._raised_us),
            cause_event_id=cause.event_id,
            cause_reading=cause.reading,
            acknowledged_by=self._ack_by,
            acknowledged_at=self._ack_at,
            flapping=self._flapping,
            detail=self._detail,
            folded_raises=self._folded or None,
            rate_limited=True if self._limited else None,
        )

    @property
    def pristine(self) -> bool:
        """Whether nothing but the last update's time differs from a new machine's state.

        Most machines never see their condition: their snapshot is that one time.
        """
        return (
            self._alarm_id is None
            and self._pending_since is None
            and self._since_us == 0
            and self._raised_us == 0
            and self._clear_since is None
            and self._ack_by is None
            and self._ack_at is None
            and not self._flapping
            and not self._limited
            and self._release_us == 0
            and not self._ended
            and self._folded == 0
            and self._announced is None
            and self._detail is None
            and not self._raises
            and self._severity is self.policy.severity
        )

    def snapshot(self) -> dict[str, Any]:
        """Return the state as plain data (only ``last`` for a :attr:`pristine` machine)."""
        if self.pristine:
            return {"last": self._last_t}
        return {
            "last": self._last_t,
            "since": self._since_us,
            "pending": self._pending_since,
            "alarm_id": self._alarm_id,
            "raised": self._raised_us,
            "severity": self._severity.value,
            "clear_since": self._clear_since,
            "ack_by": self._ack_by,
            "ack_at": None if self._ack_at is None else self._ack_at.isoformat(),
            "flapping": self._flapping,
            "raises": list(self._raises),
            "limited": self._limited,
            "release": self._release_us,
            "ended": self._ended,
            "folded": self._folded,
            "announced": self._announced,
            "detail": None
            if self._detail is None
            else self._detail.model_dump(mode="json", exclude_none=True),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot` (snapshots from before rate limiting load too).

        A field the snapshot leaves out has a new machine's value (a pristine one's
        snapshot holds ``last`` alone).
        """
        self._last_t = state["last"]
        self._pending_since = state.get("pending")
        self._alarm_id = state.get("alarm_id")
        self._raised_us = state.get("raised", 0)
        # A snapshot from before the anchor: its active alarm was named by its raise time.
        self._since_us = int(state.get("since", self._raised_us if self._alarm_id else 0))
        severity = state.get("severity")
        self._severity = self.policy.severity if severity is None else Severity(severity)
        self._clear_since = state.get("clear_since")
        self._ack_by = state.get("ack_by")
        ack_at = state.get("ack_at")
        self._ack_at = None if ack_at is None else datetime.fromisoformat(ack_at)
        self._flapping = state.get("flapping", False)
        self._raises = deque(state.get("raises", ()), maxlen=raise_history(self.policy))
        self._limited = bool(state.get("limited", False))
        self._release_us = int(state.get("release", 0))
        self._ended = bool(state.get("ended", False))
        self._folded = int(state.get("folded", 0))
        self._announced = state.get("announced")
        detail = state.get("detail")
        self._detail = None if detail is None else AlarmDetail.model_validate(detail)
