"""The one duration and time grammar: examples, round trips and refusals."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import SensorGateError, TimeFormatError
from contract.durations import format_duration, parse_duration, parse_time

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_UNIT = {"us": 1, "ms": 1_000, "s": 10**6, "m": 60 * 10**6, "h": 3600 * 10**6}
_UNIT |= {"d": 86_400 * 10**6, "w": 7 * 86_400 * 10**6}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("10s", timedelta(seconds=10)),
        ("1m", timedelta(minutes=1)),
        ("1.5h", timedelta(minutes=90)),
        ("7d", timedelta(days=7)),
        ("1w", timedelta(days=7)),
        ("250us", timedelta(microseconds=250)),
        ("0s", timedelta(0)),
        (" 1 m ", timedelta(minutes=1)),  # rules and windows always allowed spaces
        ("0.0000004s", timedelta(0)),  # rounded to the microsecond
    ],
)
def test_durations_every_caller_wrote_still_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "bad", ["", "10", "s", "1h30m", "-1s", "1.s", ".5s", "1S", "1 min", "1e3s", "\u0661s", "inf"]
)
def test_other_durations_are_refused_naming_the_accepted_forms(bad: str) -> None:
    with pytest.raises(TimeFormatError, match=r"expected a duration like 500ms, 10s") as info:
        parse_duration(bad)
    assert repr(bad) in str(info.value)
    assert isinstance(info.value, SensorGateError)
    assert isinstance(info.value, ValueError)


def test_a_duration_too_long_for_a_timedelta_is_refused() -> None:
    with pytest.raises(TimeFormatError, match="shorter than"):
        parse_duration("1000000000d")


def test_times_relative_absolute_and_zoneless() -> None:
    assert parse_time("now", now=NOW) == NOW
    assert parse_time("90m", now=NOW) == datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
    assert parse_time("-2h", now=NOW) == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert parse_time("2026-03-01T00:00:00Z", now=NOW) == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_time("2026-03-01T01:00:00+01:00", now=NOW) == datetime(2026, 3, 1, tzinfo=UTC)
    # A zone-less time is UTC, everywhere (replay used to refuse it, alerts took it as UTC).
    assert parse_time("2026-03-01T00:00:00", now=NOW) == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_time("2026-03-01", now=NOW) == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_time(" 2026-03-01 00:30 ", now=NOW) == datetime(2026, 3, 1, 0, 30, tzinfo=UTC)


def test_times_come_back_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    assert parse_time("now", now=NOW.astimezone(paris)).tzinfo is UTC
    assert parse_time("2026-03-01T01:00:00+01:00", now=NOW).tzinfo is UTC


@pytest.mark.parametrize(
    "bad", ["", "yesterday", "-2x", "--2h", "1h; DROP DATABASE x", "2026-13-01", "now-2h"]
)
def test_other_times_are_refused_naming_the_accepted_forms(bad: str) -> None:
    with pytest.raises(TimeFormatError, match="now, a duration ago") as info:
        parse_time(bad, now=NOW)
    assert "without a zone is UTC" in str(info.value)


def test_a_time_too_long_ago_is_refused() -> None:
    with pytest.raises(TimeFormatError, match="before the year 1"):
        parse_time("999999w", now=NOW)


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_time("now", now=NOW.replace(tzinfo=None))


_DURATIONS = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10**6))


@given(_DURATIONS)
def test_formatting_round_trips(value: timedelta) -> None:
    text = format_duration(value)
    assert re.fullmatch(r"[0-9]+(us|ms|s|m|h|d)", text)
    assert parse_duration(text) == value


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(sorted(_UNIT)))
def test_number_and_unit_is_that_many_units(n: int, unit: str) -> None:
    assert parse_duration(f"{n}{unit}") == timedelta(microseconds=n * _UNIT[unit])


@given(
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=999),
    st.sampled_from(sorted(_UNIT)),
)
def test_decimals_scale_exactly(whole: int, thousandths: int, unit: str) -> None:
    whole_us, rest = divmod((whole * 1000 + thousandths) * _UNIT[unit], 1000)
    if rest > 500 or (rest == 500 and whole_us % 2):  # half to even
        whole_us += 1
    expected = timedelta(microseconds=whole_us)
    assert parse_duration(f"{whole}.{thousandths:03d}{unit}") == expected


@given(st.timedeltas(min_value=timedelta(0), max_value=NOW - datetime(1, 1, 1, tzinfo=UTC)))
def test_a_duration_is_also_a_time_that_long_ago(value: timedelta) -> None:
    text = format_duration(value)
    assert parse_time(text, now=NOW) == NOW - value
    assert parse_time(f"-{text}", now=NOW) == NOW - value


@given(st.datetimes(timezones=st.just(UTC)))
def test_iso_times_round_trip(when: datetime) -> None:
    assert parse_time(when.isoformat(), now=NOW) == when
    assert parse_time(when.replace(tzinfo=None).isoformat(), now=NOW) == when


@given(st.text(max_size=40))
def test_garbage_is_refused_with_what_arrived_or_parses(text: str) -> None:
    refused: list[TimeFormatError] = []
    try:
        assert parse_duration(text) >= timedelta(0)
    except TimeFormatError as exc:
        refused.append(exc)
    try:
        assert parse_time(text, now=NOW).tzinfo is UTC
    except TimeFormatError as exc:
        refused.append(exc)
    assert all(repr(text) in str(exc) for exc in refused)
