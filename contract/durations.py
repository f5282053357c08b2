"""Durations and points in time as people write them: one grammar for the whole project.

Alarm rules, stream windows, ``replay``, the views (``alerts``, ``devices``, ``query``),
the dashboard and the simulators all read durations and times with these functions, so
``2h`` or ``2026-03-01T00:00:00`` means the same everywhere.

Durations (:func:`parse_duration`)
    A non-negative decimal number and a unit, with optional spaces around and between
    them: ``500ms``, ``10s``, ``1.5m``, ``2 h``, ``7d``, ``1w``. Units: ``us``
    (microseconds), ``ms``, ``s``, ``m`` (minutes), ``h``, ``d``, ``w`` (7 days), lower
    case. The value is rounded to the microsecond. Compound forms (``1h30m``) are not
    accepted: write ``90m`` or ``1.5h``. :func:`format_duration` writes a value back as
    a whole number in the largest unit up to days that holds it exactly (``90m``,
    ``7d``), which parses to the same value and is also an InfluxQL duration literal
    for whole milliseconds.

Times (:func:`parse_time`)
    ``now``; a duration ago, written ``2h`` or ``-2h``; or an ISO 8601 / RFC 3339 time
    such as ``2026-03-01T10:00:00Z``, ``2026-03-01T11:00:00+01:00``, ``2026-03-01 10:00``
    or ``2026-03-01``. **A time without a zone is UTC.** The result is always an aware
    UTC datetime.

Anything else raises :class:`~contract.errors.TimeFormatError` (a ``ValueError``, so
pydantic validators report it as a validation error), whose message names the accepted
forms and repeats what arrived.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from contract.errors import TimeFormatError

__all__ = [
    "DURATION_FORMS",
    "TIME_FORMS",
    "format_duration",
    "parse_duration",
    "parse_time",
]

DURATION_FORMS = "500ms, 10s, 1.5m, 2h, 7d or 1w (a number and a unit: us ms s m h d w)"
"""The accepted duration forms, for error messages and command-line help."""
TIME_FORMS = (
    "now, a duration ago (2h or -2h) or an ISO 8601 time like 2026-03-01T10:00:00Z"
    " (a time without a zone is UTC)"
)
"""The accepted time forms, for error messages and command-line help."""

_UNIT_US = {
    "us": 1,
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 604_800_000_000,
}
# Written back in days at most: "7d" reads better than "1w", and "10d" needs no weeks.
_LARGEST_FIRST = sorted(((u, n) for u, n in _UNIT_US.items() if u != "w"), key=lambda i: -i[1])
# ASCII digits only: `\d` would also take digits of other scripts.
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(us|ms|s|m|h|d|w)\s*")
_MAX_US = (timedelta.max // timedelta(microseconds=1)) - 1
_MAX_TEXT = 64  # longer input is garbage; do not hand it to Decimal


def parse_duration(text: str) -> timedelta:
    """Return the duration ``text`` stands for (``500ms``, ``10s``, ``1.5m``, ``2h``).

    Raises :class:`~contract.errors.TimeFormatError` naming the accepted forms.
    """
    match = _DURATION.fullmatch(text) if len(text) <= _MAX_TEXT else None
    if match is None:
        raise TimeFormatError(f"expected a duration like {DURATION_FORMS}; got {text!r}")
    us = (Decimal(match[1]) * _UNIT_US[match[2]]).to_integral_value(ROUND_HALF_EVEN)
    if us > _MAX_US:
        raise TimeFormatError(
            f"a duration must be shorter than {_MAX_US // 86_400_000_000} days; got {text!r}"
        )
    return timedelta(microseconds=int(us))


def format_duration(value: timedelta) -> str:
    """Write ``value`` in the largest unit up to days that holds it exactly (``90m``, ``7d``).

    ``parse_duration(format_duration(d)) == d`` for every non-negative ``d``.
    """
    us = value // timedelta(microseconds=1)
    if us < 0:
        raise ValueError(f"a duration cannot be negative; got {value}")
    if us == 0:
        return "0s"
    for unit, size in _LARGEST_FIRST:
        if us % size == 0:
            return f"{us // size}{unit}"
    raise AssertionError("unreachable: every duration is a whole number of microseconds")


def parse_time(text: str, *, now: datetime) -> datetime:
    """Return the UTC time ``text`` stands for: ``now``, ``2h`` (ago) or ISO 8601.

    ``now`` (timezone-aware) is the present the relative forms count back from. A time
    written without a zone is taken as UTC. Raises
    :class:`~contract.errors.TimeFormatError` naming the accepted forms.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    stripped = text.strip()
    if stripped == "now":
        return now.astimezone(UTC)
    ago = stripped[1:] if stripped.startswith("-") else stripped
    if _DURATION.fullmatch(ago) is not None:
        try:
            return (now - parse_duration(ago)).astimezone(UTC)
        except OverflowError:
            raise TimeFormatError(f"{text!r} ago is before the year 1") from None
    try:
        when = datetime.fromisoformat(stripped)
    except ValueError:
        raise TimeFormatError(f"expected {TIME_FORMS}; got {text!r}") from None
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC)
    except OverflowError:
        raise TimeFormatError(f"{text!r} is out of range in UTC") from None
