"""Unit tests of the views: input validation and statement building (no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.influx.layout import StorageLayout
from gateway.settings import InfluxSettings
from gateway.views import AlarmFilter, ViewInputError, Views, choose_interval
from gateway.views.clauses import parse_interval
from gateway.views.fake import FakeQueryRunner


def test_choose_interval_grows_with_the_range() -> None:
    assert choose_interval(timedelta(minutes=30)) == "10s"
    assert choose_interval(timedelta(hours=6)) == "1m"
    assert choose_interval(timedelta(days=1)) == "5m"
    assert choose_interval(timedelta(days=7)) == "1h"
    assert choose_interval(timedelta(days=3650)) == "7d"


def test_intervals_are_written_as_influxql_literals() -> None:
    assert parse_interval("15m") == ("15m", timedelta(minutes=15))
    assert parse_interval("1.5m") == ("90s", timedelta(seconds=90))
    assert parse_interval(" 2 h ") == ("2h", timedelta(hours=2))
    assert parse_interval("7d") == ("7d", timedelta(days=7))
    for bad in ("yesterday", "0s", "1500us", "1h; DROP DATABASE x"):
        with pytest.raises(ViewInputError):
            parse_interval(bad)


def test_a_bucket_interval_reaches_influxql_in_its_canonical_form() -> None:
    runner = FakeQueryRunner()
    now = datetime(2026, 1, 2, tzinfo=UTC)
    interval, _ = Views(runner).readings(
        "s", "d", start=now - timedelta(hours=1), end=now, interval="1.5 m", now=now
    )
    assert interval == "90s"
    assert "GROUP BY time(90s)" in runner.statements[-1]


@pytest.mark.parametrize(
    "bad",
    ["a\nb", "trailing\n", "\n", "x\x00", "ends\\", "a/b", "+", "#", "", "z" * 200],
)
def test_ids_that_cannot_exist_are_refused_before_querying(bad: str) -> None:
    runner = FakeQueryRunner()
    with pytest.raises(ViewInputError):
        Views(runner).active_alarms(AlarmFilter(device=bad))
    assert runner.statements == []


def test_severity_and_state_are_checked() -> None:
    with pytest.raises(ViewInputError, match="severity"):
        AlarmFilter(severity="critical' OR 1=1")
    with pytest.raises(ViewInputError, match="state"):
        AlarmFilter(state="nope")


def test_hostile_values_are_quoted() -> None:
    runner = FakeQueryRunner()
    Views(runner).alarm_history(AlarmFilter(device="x' OR 1=1 --", site="a\\b"))
    (q,) = runner.statements
    assert "\"device\" = 'x\\' OR 1=1 --'" in q
    assert "\"site\" = 'a\\\\b'" in q


def test_bad_range_and_interval_refused() -> None:
    views = Views(FakeQueryRunner())
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
    active = Views(FakeQueryRunner(rows)).active_alarms()
    assert [a.alarm_id for a in active] == ["2", "1"]


def _bucket(when: datetime, mean: float) -> dict[str, Any]:
    ns = int(when.timestamp()) * 10**9
    return {"time": ns, "sensor": "s", "metric": "m", "mean": mean, "min": mean, "max": mean}


def test_a_long_range_reads_aggregates_and_raw_only_where_none_are() -> None:
    layout = StorageLayout.of(InfluxSettings())
    end = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    start = end - timedelta(days=1)  # 5 minute buckets
    last = end - timedelta(minutes=10)  # the windows of the last minutes are still open
    runner = FakeQueryRunner(
        layout=layout,
        answers=[
            (
                "SHOW TAG VALUES",
                [{"key": "window", "value": "1m"}, {"key": "window", "value": "10s"}],
            ),
            ("\"window\" = '1m'", [_bucket(start, 1.0), _bucket(last, 2.0)]),
            (
                'FROM "raw"."readings"',
                [_bucket(last, 9.0), _bucket(end - timedelta(minutes=5), 3.0)],
            ),
        ],
    )
    views = Views(runner)  # the layout comes with the runner
    assert views.reads_aggregates(start, end, now=end)
    interval, points = views.readings("site", "dev", start=start, end=end, now=end)
    assert interval == "5m"
    assert [(p.time, p.mean) for p in points] == [
        (start, 1.0),
        (last, 2.0),  # the raw bucket of the same time is not added
        (end - timedelta(minutes=5), 3.0),
    ]
    show, aggs, raw = runner.statements
    assert show.startswith('SHOW TAG VALUES FROM "aggregates"."aggregates" WITH KEY = "window"')
    assert 'FROM "aggregates"."aggregates"' in aggs
    assert "GROUP BY time(5m)" in aggs
    # Raw readings only after the last bucket of aggregates.
    assert 'FROM "raw"."readings"' in raw
    assert f"time >= {int((last + timedelta(minutes=5)).timestamp()) * 10**9}" in raw


def test_a_short_range_reads_raw_unless_it_starts_before_the_raw_retention() -> None:
    runner = FakeQueryRunner()
    views = Views(runner, layout=StorageLayout.of(InfluxSettings()))
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert not views.reads_aggregates(now - timedelta(hours=6), now, now=now)
    assert views.reads_aggregates(now - timedelta(hours=6, seconds=1), now, now=now)
    old = now - timedelta(days=31)
    assert views.reads_aggregates(old, old + timedelta(hours=1), now=now)
    assert not views.reads_aggregates(old, old + timedelta(hours=1), "raw", now=now)
    # Without retention policies the raw readings never expire.
    single = Views(FakeQueryRunner())
    assert not single.reads_aggregates(old, old + timedelta(hours=1), now=now)
    views.readings("s", "d", start=now - timedelta(hours=1), end=now, now=now)
    (q,) = runner.statements
    assert 'FROM "raw"."readings"' in q
    assert "GROUP BY time(10s)" in q


def test_a_long_range_without_aggregates_reads_raw() -> None:
    runner = FakeQueryRunner()
    views = Views(runner, layout=StorageLayout.of(InfluxSettings()))
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    views.readings("s", "d", start=now - timedelta(days=7), end=now, now=now)
    assert [q.split(" FROM ")[1].split(" ")[0] for q in runner.statements] == [
        '"aggregates"."aggregates"',  # SHOW TAG VALUES: no windows stored
        '"raw"."readings"',
    ]
