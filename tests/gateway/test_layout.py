"""Where each measurement is stored: the layout, the retention settings, the policy plan."""

from __future__ import annotations

from datetime import timedelta

import pytest

from contract.errors import ConfigError
from gateway.influx.layout import MEASUREMENT_CLASS, RetentionPolicy, StorageLayout
from gateway.influx.retention import go_duration_hours, plan
from gateway.settings import InfluxSettings, load_settings


def test_every_measurement_has_its_policy_and_qualified_name() -> None:
    layout = StorageLayout.of(InfluxSettings())
    assert layout.active
    assert {m: layout.policy(m) for m in MEASUREMENT_CLASS} == {
        "readings": "raw",
        "late_readings": "raw",
        "aggregates": "aggregates",
        "alarms": "aggregates",
        "replay_aggregates": "aggregates",
        "replay_alarms": "aggregates",
        "deadletters": "deadletters",
    }
    assert (layout.readings, layout.late_readings) == ('"raw"."readings"', '"raw"."late_readings"')
    assert (layout.aggregates, layout.alarms) == (
        '"aggregates"."aggregates"',
        '"aggregates"."alarms"',
    )
    assert layout.deadletters == '"deadletters"."deadletters"'
    assert layout.raw_period == timedelta(days=30)
    assert [(p.name, p.duration, p.default) for p in layout.distinct()] == [
        ("raw", "30d", True),
        ("aggregates", "400d", False),
        ("deadletters", "14d", False),
    ]
    with pytest.raises(ValueError, match="no measurement 'load'"):
        layout.policy("load")


def test_retention_off_keeps_every_measurement_in_the_default_policy() -> None:
    for settings in (
        InfluxSettings(retention={"enabled": False}),
        InfluxSettings(api="v1", token="t"),  # InfluxDB 2.x/3.x through the v1 API
        InfluxSettings(api="v2", token="t", org="o", bucket="b"),
        InfluxSettings(api="v3", token="t"),
    ):
        layout = StorageLayout.of(settings)
        assert not layout.active
        assert {layout.policy(m) for m in MEASUREMENT_CLASS} == {None}
        assert layout.aggregates == '"aggregates"'
        assert layout.raw_period is None
        assert layout.distinct() == ()
    # Forced on with a token: 2.x buckets named database/policy through the v1 API.
    forced = StorageLayout.of(InfluxSettings(token="t", retention={"enabled": True}))
    assert forced.policy("alarms") == "aggregates"


def test_names_and_durations_are_configurable_and_classes_may_share_a_policy() -> None:
    settings = InfluxSettings(
        retention={
            "raw": "7d",
            "aggregates": "INF",
            "deadletters": "7d",
            "raw_policy": "short",
            "aggregates_policy": "forever",
            "deadletters_policy": "short",
        }
    )
    layout = StorageLayout.of(settings)
    assert layout.deadletters == '"short"."deadletters"'
    assert [(p.name, p.duration, p.period) for p in layout.distinct()] == [
        ("short", "7d", timedelta(days=7)),
        ("forever", "INF", None),
    ]


@pytest.mark.parametrize(
    ("retention", "reason"),
    [
        ({"raw": "30 days"}, "whole hours, days or weeks"),
        ({"raw": "90m"}, "whole hours, days or weeks"),
        ({"aggregates": "0d"}, "whole hours, days or weeks"),
        ({"deadletters_policy": "a\nb"}, "printable"),
        ({"deadletters_policy": "raw"}, "two durations"),
    ],
)
def test_bad_retention_settings_are_refused_naming_the_field(
    retention: dict[str, str], reason: str
) -> None:
    with pytest.raises(ConfigError, match=reason) as caught:
        load_settings(influx={"retention": retention})
    assert caught.value.field.startswith("influx.retention")


def test_retention_needs_the_v1_api_and_raw_readings_outliving_the_ingest_window() -> None:
    with pytest.raises(ConfigError, match="retention policies need the v1 write API"):
        load_settings(influx={"api": "v2", "retention": {"enabled": True}})
    with pytest.raises(ConfigError, match=r"influx.retention.raw \(7d\).*ingest.max_past_s"):
        load_settings(influx={"retention": {"raw": "7d"}})
    ok = load_settings(influx={"retention": {"raw": "7d"}}, ingest={"max_past_s": 7 * 86_400})
    assert ok.influx.retention.raw == "7d"
    # Off, the raw duration is not used and nothing is checked.
    load_settings(influx={"retention": {"raw": "7d", "enabled": False}})


def test_go_durations_as_influxd_prints_them() -> None:
    assert go_duration_hours("720h0m0s") == 720
    assert go_duration_hours("1h30m0s") == 1.5
    assert go_duration_hours("0s") is None
    with pytest.raises(ValueError, match="as influxd prints one"):
        go_duration_hours("30d")


def _row(name: str, duration: str, shard: str, default: bool = False) -> dict[str, object]:
    return {
        "name": name,
        "duration": duration,
        "shardGroupDuration": shard,
        "replicaN": 1,
        "default": default,
    }


RAW = RetentionPolicy("raw", "30d", default=True)
AGG = RetentionPolicy("aggregates", "400d")


def test_plan_creates_what_is_missing_and_leaves_what_matches() -> None:
    changes = plan("db", (RAW, AGG), [_row("autogen", "0s", "168h0m0s", default=True)])
    assert [(c.action, c.statement) for c in changes] == [
        ("create", 'CREATE RETENTION POLICY "raw" ON "db" DURATION 30d REPLICATION 1 DEFAULT'),
        ("create", 'CREATE RETENTION POLICY "aggregates" ON "db" DURATION 400d REPLICATION 1'),
    ]
    rows = [
        _row("autogen", "0s", "168h0m0s"),
        _row("raw", "720h0m0s", "24h0m0s", default=True),
        _row("aggregates", "9600h0m0s", "168h0m0s"),
    ]
    assert [(c.action, c.statement, c.detail) for c in plan("db", (RAW, AGG), rows)] == [
        ("ok", None, "30d (default)"),
        ("ok", None, "400d"),
    ]


def test_plan_alters_a_changed_duration_and_a_lost_default() -> None:
    rows = [
        _row("autogen", "0s", "168h0m0s", default=True),
        _row("raw", "720h0m0s", "24h0m0s"),
        _row("aggregates", "9600h0m0s", "168h0m0s"),
    ]
    shorter = RetentionPolicy("raw", "12h", default=True)
    longer = RetentionPolicy("aggregates", "INF")
    changes = plan('we"ird', (shorter, longer), rows)
    assert [(c.action, c.statement, c.detail) for c in changes] == [
        (
            "alter",
            # Below the 24 h shard groups: influxd wants a shorter shard duration too.
            'ALTER RETENTION POLICY "raw" ON "we\\"ird" DURATION 12h SHARD DURATION 1h DEFAULT',
            "duration 30d -> 12h, made the default",
        ),
        (
            "alter",
            'ALTER RETENTION POLICY "aggregates" ON "we\\"ird" DURATION INF',
            "duration 400d -> INF",
        ),
    ]
