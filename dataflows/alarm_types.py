"""What an alarm is about and how its rule shapes it: key, policy, cause, and helpers.

The value types :class:`~dataflows.alarms.AlarmMachine` takes (and the detectors and
the flow build): :class:`AlarmKey` (site, device, series, rule), :class:`AlarmPolicy`
(a rule's timing, flapping and rate limit), :class:`Cause` (the event behind a
transition) and :data:`Explain`; with the small pure helpers the machine uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from contract.alarms import AlarmDetail, Severity

__all__ = [
    "AlarmKey",
    "AlarmPolicy",
    "Cause",
    "Explain",
    "finite",
    "higher_severity",
    "raise_history",
    "span_text",
    "us_to_dt",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Explain = Callable[[], AlarmDetail | None]
"""Returns the detail of a signal; called only for the updates that make an event."""


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
    max_raises: int = 6
    """Raises a key may make within ``raise_window_us`` (0: no limit)."""
    raise_window_us: int = 3_600_000_000


@dataclass(frozen=True, slots=True)
class Cause:
    """The event (and reading) behind a transition, for traceability."""

    event_id: str | None = None
    reading: str | None = None
    traceparent: str | None = None


def raise_history(policy: AlarmPolicy) -> int:
    """Raise times a machine keeps: enough for the flapping and the rate-limit checks."""
    return max(1, policy.flap_count, policy.max_raises)


def span_text(us: int) -> str:
    """Write a duration in microseconds as ``1 h``, ``5 min`` or ``90 s``."""
    seconds = us / 1_000_000
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def finite(value: float | None) -> float | None:
    """Return ``value`` as a float, or None if it is None, NaN or infinite."""
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return float(value)


def higher_severity(current: Severity, new: Severity | None) -> Severity:
    """Return the more urgent of two severities (``new`` None: ``current``)."""
    return current if new is None or new.rank <= current.rank else new
