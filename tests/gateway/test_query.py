"""Unit tests of the views: input validation and statement building (no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.views.queries import (
    AlarmFilter,
    ViewInputError,
    Views,
    choose_interval,
    parse_duration,
    parse_time,
)


class FakeRunner:
    def __init__(self, rows: list[dict[str, Any]] | None = None) -> None:
        self.statements: list[str] = []
        self.rows = rows or []

    def query(self, q: str) -> list[dict[str, Any]]:
        self.statements.append(q)
        return self.rows


def test_choose_interval_grows_with_the_range() -> None:
    assert choose_interval(timedelta(minutes=30)) == "10s"
    assert choose_interval(timedelta(hours=6)) == "1m"
    assert choose_interval(timedelta(days=1)) == "5m"
    assert choose_interval(timedelta(days=7)) == "1h"
    assert choose_interval(timedelta(days=3650)) == "7d"


def test_parse_time_and_duration() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_time("now", now=now) == now
    assert parse_time("-2h", now=now) == now - timedelta(hours=2)
    assert parse_time("2h", now=now) == now - timedelta(hours=2)
    assert parse_time("2026-01-01T00:00:00", now=now) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_time("2026-01-01T01:00:00+01:00", now=now) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_duration("15m") == timedelta(minutes=15)
    for bad in ("yesterday", "-2x", "1h; DROP DATABASE x"):
        with pytest.raises(ViewInputError):
            parse_time(bad, now=now)


@pytest.mark.parametrize(
    "bad",
    ["a\nb", "trailing\n", "\n", "x\x00", "ends\\", "a/b", "+", "#", "", "z" * 200],
)
def test_ids_that_cannot_exist_are_refused_before_querying(bad: str) -> None:
    runner = FakeRunner()
    with pytest.raises(ViewInputError):
        Views(runner).active_alarms(AlarmFilter(device=bad))
    assert runner.statements == []


def test_severity_and_state_are_checked() -> None:
    with pytest.raises(ViewInputError, match="severity"):
        AlarmFilter(severity="critical' OR 1=1")
    with pytest.raises(ViewInputError, match="state"):
        AlarmFilter(state="nope")


def test_hostile_values_are_quoted() -> None:
    runner = FakeRunner()
    Views(runner).alarm_history(AlarmFilter(device="x' OR 1=1 --", site="a\\b"))
    (q,) = runner.statements
    assert "\"device\" = 'x\\' OR 1=1 --'" in q
    assert "\"site\" = 'a\\\\b'" in q


def test_bad_range_and_interval_refused() -> None:
    views = Views(FakeRunner())
    now = datetime.now(UTC)
    with pytest.raises(ViewInputError):
        views.readings("s", "d", start=now, end=now - timedelta(hours=1))
    with pytest.raises(ViewInputError):
        views.readings("s", "d", start=now - timedelta(hours=1), end=now, interval="1h) ; x")
    with pytest.raises(ViewInputError):
        views.alarm_history(limit=0)


def test_active_alarms_keep_the_latest_non_cleared_event_most_severe_first() -> None:
    t = 1_700_000_000_000_000_000
    rows = [
        {
            "time": t,
            "site": "s",
            "device": "a",
            "metric": "m",
            "rule": "r",
            "severity": "minor",
            "state": "active",
            "alarm_id": "1",
        },
        {
            "time": t + 1,
            "site": "s",
            "device": "b",
            "metric": "m",
            "rule": "r",
            "severity": "critical",
            "state": "acknowledged",
            "alarm_id": "2",
        },
        {
            "time": t + 2,
            "site": "s",
            "device": "c",
            "metric": "m",
            "rule": "r",
            "severity": "critical",
            "state": "cleared",
            "alarm_id": "3",
        },
    ]
    active = Views(FakeRunner(rows)).active_alarms()
    assert [a.alarm_id for a in active] == ["2", "1"]
