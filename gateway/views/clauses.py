"""The validated pieces of the views' InfluxQL: tag values, time ranges, intervals, windows.

Every value a user can give (site, device, sensor, metric, rule, times, windows,
limits, intervals) is checked here and then quoted with
:func:`~gateway.influx.query.quote_string`; a value that is not acceptable raises
:class:`ViewInputError` before any statement is built, so user input never reaches
InfluxDB unquoted.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from contract.durations import format_duration, parse_duration
from contract.errors import InputError, TimeFormatError, TopicError
from contract.ids import check_id
from gateway.influx.query import quote_string

__all__ = [
    "INTERVALS",
    "MAX_POINTS",
    "ViewInputError",
    "check_limit",
    "choose_interval",
    "from_ns",
    "parse_interval",
    "tag_value",
    "time_clause",
    "tumbling_length",
    "usable_windows",
]


class ViewInputError(InputError):
    """A filter, time or name given to a view is not acceptable (says which and why)."""


# Chart intervals, smallest first: the interval of a range is the first that gives at
# most MAX_POINTS buckets.
INTERVALS: tuple[str, ...] = ("10s", "1m", "5m", "15m", "1h", "6h", "1d", "7d")
MAX_POINTS = 400


def parse_interval(text: str) -> tuple[str, timedelta]:
    """Return a bucket interval as an InfluxQL duration literal and as a timedelta.

    ``text`` is a duration as :func:`contract.durations.parse_duration` reads it
    (``90s``, ``1.5m``, ``2h``), of whole milliseconds and at least 1 ms; the literal
    is its shortest exact form (``1.5m`` gives ``90s``). Raises :class:`ViewInputError`.
    """
    try:
        step = parse_duration(text)
    except TimeFormatError as exc:
        raise ViewInputError(str(exc)) from None
    if step < _MS or step % _MS:
        raise ViewInputError(f"an interval must be whole milliseconds, at least 1ms; got {text!r}")
    return format_duration(step), step


_MS = timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(when: datetime) -> int:
    return ((when - _EPOCH) // timedelta(microseconds=1)) * 1000


def choose_interval(span: timedelta, *, max_points: int = MAX_POINTS) -> str:
    """Return the smallest chart interval giving at most ``max_points`` buckets over ``span``."""
    for name in INTERVALS:
        if span / parse_duration(name) <= max_points:
            return name
    return INTERVALS[-1]


_LOOSE_KINDS = frozenset({"metric", "rule", "window"})
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")


def tag_value(kind: str, value: str) -> str:
    """Validate one tag value and quote it as an InfluxQL string literal.

    Sites, devices and sensors follow the contract's id rules; an alarm's metric and
    rule may also hold ``/`` (``sensor/metric``) but no control character.
    """
    # Checked here for every kind: contract.ids.check_id lets one trailing newline
    # through (its pattern ends in ``$``, which matches before a final ``\n``).
    if isinstance(value, str) and _CONTROL_RE.search(value):
        raise ViewInputError(f"{kind} {value!r} contains a control character")
    if kind in _LOOSE_KINDS:
        if not isinstance(value, str) or not 1 <= len(value) <= 256:
            raise ViewInputError(f"{kind} must be 1 to 256 characters; got {value!r}")
        if _CONTROL_RE.search(value) or value.endswith("\\"):
            raise ViewInputError(
                f"{kind} {value!r} contains a control character or ends with a backslash"
            )
        return quote_string(value)
    try:
        return quote_string(check_id(kind, value))
    except TopicError as exc:
        raise ViewInputError(str(exc)) from None


def from_ns(value: Any) -> datetime | None:
    """Return an InfluxDB time (nanoseconds since the epoch) as a UTC datetime, or None."""
    if value is None:
        return None
    # Exact to the microsecond (a float of nanoseconds is not).
    return _EPOCH + timedelta(microseconds=int(value) // 1000)


def time_clause(start: datetime, end: datetime) -> str:
    """Return the WHERE clause of ``[start, end]`` (aware times, end after start)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ViewInputError("times must be timezone-aware (UTC)")
    if end <= start:
        raise ViewInputError(f"the range must end after it starts; got {start} .. {end}")
    return f"time >= {_ns(start)} AND time <= {_ns(end)}"


def check_limit(limit: int) -> int:
    """Return ``limit`` if it is a whole number of rows from 1 to 100,000."""
    if not isinstance(limit, int) or not 1 <= limit <= 100_000:
        raise ViewInputError(f"limit must be an integer from 1 to 100000; got {limit!r}")
    return limit


def usable_windows(windows: tuple[str, ...], step: timedelta) -> list[str]:
    """Return the tumbling windows not longer than ``step``, shortest first (else the shortest)."""
    lengths = {w: length for w in windows if (length := tumbling_length(w)) is not None}
    if not lengths:
        raise ViewInputError(f"no tumbling window among {windows!r}")
    usable = sorted((w for w in lengths if lengths[w] <= step), key=lengths.__getitem__)
    return usable or [min(lengths, key=lengths.__getitem__)]


def tumbling_length(window: str) -> timedelta | None:
    """Return a tumbling window's length (``1m``); None for a sliding one (``5m/1m``)."""
    if "/" in window:
        return None
    try:
        return parse_duration(window)
    except TimeFormatError:
        return None
