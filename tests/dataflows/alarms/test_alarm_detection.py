import json
from datetime import UTC, datetime, timedelta

from contract import DeviceOfflineEvent, DeviceOnlineEvent, Reading, TelemetryEvent
from contract.alarms import (
    AlarmAcknowledgedEvent,
    AlarmClearedEvent,
    AlarmRaisedEvent,
    AlarmUpdatedEvent,
    Severity,
)
from dataflows.detection import SITE_DEVICE, DeviceDetector, SiteDetector
from dataflows.rules import default_rules, parse_rules
from dataflows.windows import Aggregate

T0 = datetime(2026, 3, 1, tzinfo=UTC)
S = 1_000_000
T0_US = int(T0.timestamp()) * S
_seq = iter(range(10**9))


def at(s):
    return T0 + timedelta(seconds=s)


def tel(s, device="d1", site="s1", **metrics):
    readings = []
    for name, value in metrics.items():
        if isinstance(value, str):
            readings.append(Reading(sensor="env", metric=name, fault=value, time=at(s)))
        else:
            readings.append(Reading(sensor="env", metric=name, value=value, time=at(s)))
    return TelemetryEvent.create(
        site=site, device=device, sequence=next(_seq), readings=readings, time=at(s)
    )


def kinds(events):
    return [type(e).__name__.removeprefix("Alarm").removesuffix("Event").lower() for e in events]


RULES = parse_rules(
    {
        "rules": [
            {
                "id": "hot",
                "kind": "threshold",
                "metric": "temperature",
                "above": 30,
                "clear": 28,
                "levels": {"critical": 40},
                "severity": "major",
            },
            {"id": "bad", "kind": "range", "metric": "temperature", "low": -40, "high": 125},
            {"id": "quiet", "kind": "deadman", "silence": "60s"},
        ]
    }
)


def test_threshold_raise_escalate_clear_with_cause():
    det = DeviceDetector("s1", "d1", RULES)
    assert det.process([tel(0, temperature=20)]) == []
    hot = tel(1, temperature=31)
    [raised] = det.process([hot])
    assert isinstance(raised, AlarmRaisedEvent)
    d = raised.data
    assert (d.site, d.device, d.sensor, d.metric, d.rule) == (
        "s1",
        "d1",
        "env",
        "temperature",
        "hot",
    )
    assert d.cause_event_id == hot.id
    assert d.event_time == at(1)
    [up] = det.process([tel(2, temperature=41)])
    assert isinstance(up, AlarmUpdatedEvent)
    assert up.data.severity is Severity.CRITICAL
    # Below the critical level but still hot: held, and not stepped down (no update).
    assert det.process([tel(3, temperature=29)]) == []
    events = det.process([tel(4, temperature=28)])
    assert kinds(events) == ["cleared"]


def test_fault_reading_raises_range_alarm_and_value_clears_it():
    det = DeviceDetector("s1", "d1", RULES)
    [raised] = det.process([tel(0, temperature="i2c read failed")])
    assert raised.data.rule == "bad"
    assert "i2c read failed" in raised.data.message
    assert kinds(det.process([tel(1, temperature=21)])) == ["cleared"]
    both = det.process([tel(2, temperature=500)])
    assert {e.data.rule for e in both} == {"bad", "hot"}


def test_out_of_order_and_duplicate_readings_are_skipped():
    det = DeviceDetector("s1", "d1", RULES)
    det.process([tel(10, temperature=31)])
    assert det.process([tel(5, temperature=20)]) == []  # older: skipped, no clear
    assert det.process([tel(10, temperature=20)]) == []  # same time again: a duplicate
    assert det.stale >= 2
    assert kinds(det.process([tel(11, temperature=20)])) == ["cleared"]


def test_deadman_tick_next_wake_and_recovery():
    det = DeviceDetector("s1", "d1", RULES)
    det.process([tel(0, temperature=20)])
    assert det.next_wake_us() == T0_US + 60 * S
    assert det.tick(T0_US + 59 * S) == []
    [raised] = det.tick(T0_US + 60 * S)
    assert raised.data.rule == "quiet"
    assert raised.data.metric == "*"
    assert det.tick(T0_US + 120 * S) == []  # already raised
    assert det.next_wake_us() is None
    assert kinds(det.process([tel(200, temperature=20)])) == ["cleared"]


def test_offline_from_last_will_and_back_online():
    rules = default_rules()
    det = DeviceDetector("s1", "d1", rules)
    will = DeviceOfflineEvent.create(site="s1", device="d1", time=at(5), reason="connection lost")
    [raised] = det.process([will])
    assert raised.data.rule == "offline"
    assert "connection lost" in raised.data.message
    assert raised.data.cause_event_id == will.id
    birth = DeviceOnlineEvent.create(site="s1", device="d1", time=at(9))
    assert kinds(det.process([birth])) == ["cleared"]
    det.process([DeviceOfflineEvent.create(site="s1", device="d1", time=at(10))])
    assert kinds(det.process([tel(11, temperature=20)])) == ["cleared"]


def _agg(end_s, mean, window="5m/1m"):
    return Aggregate(
        "s1",
        "d1",
        "env",
        "temperature",
        window,
        T0_US,
        T0_US + end_s * S,
        10,
        mean,
        0,
        0,
        None,
        0,
        0,
    )


def test_aggregate_rule_on_window_results():
    rules = parse_rules(
        {
            "rules": [
                {
                    "id": "hot5",
                    "kind": "aggregate",
                    "window": "5m/1m",
                    "metric": "temperature",
                    "above": 26,
                    "clear": 25,
                }
            ]
        }
    )
    det = DeviceDetector("s1", "d1", rules)
    assert det.process([_agg(60, 25.5)]) == []
    assert det.process([_agg(60, 30, window="10s")]) == []  # another window
    [raised] = det.process([_agg(120, 27)])
    assert "5m/1m mean" in raised.data.message
    assert det.process([_agg(180, 25.5)]) == []  # hysteresis
    assert kinds(det.process([_agg(240, 25)])) == ["cleared"]


def test_device_pattern_one_composite_alarm():
    rules = parse_rules(
        {
            "rules": [
                {
                    "id": "door-warm",
                    "kind": "pattern",
                    "mode": "sequence",
                    "within": "5m",
                    "conditions": [
                        {"member": "*/door", "op": "==", "value": 1},
                        {"member": "*/temperature", "op": ">", "value": 8},
                    ],
                }
            ]
        }
    )
    det = DeviceDetector("s1", "fridge", rules)
    assert det.process([tel(0, device="fridge", door=0, temperature=4)]) == []
    assert det.process([tel(10, device="fridge", door=1, temperature=5)]) == []
    [raised] = det.process([tel(60, device="fridge", door=1, temperature=9)])
    assert raised.data.rule == "door-warm"
    assert raised.data.metric == "*"
    assert kinds(det.process([tel(90, device="fridge", door=0, temperature=6)])) == ["cleared"]


def test_site_pattern_across_devices():
    rules = parse_rules(
        {
            "rules": [
                {
                    "id": "two-hot",
                    "kind": "pattern",
                    "scope": "site",
                    "mode": "all",
                    "within": "1m",
                    "conditions": [
                        {"member": "room-1/*/temperature", "op": ">", "value": 30},
                        {"member": "room-2/*/temperature", "op": ">", "value": 30},
                    ],
                }
            ]
        }
    )
    site = SiteDetector("s1", rules)
    assert site.on_telemetry(tel(0, device="room-1", temperature=31)) == []
    [raised] = site.on_telemetry(tel(20, device="room-2", temperature=32))
    assert raised.data.device == SITE_DEVICE
    assert raised.data.rule == "two-hot"
    site.on_telemetry(tel(30, device="room-1", temperature=20))
    site.on_telemetry(tel(40, device="room-2", temperature=20))
    assert kinds(site.on_telemetry(tel(100, device="room-2", temperature=20))) == ["cleared"]


def test_reload_keeps_state_and_clears_removed_rules():
    det = DeviceDetector("s1", "d1", RULES)
    [raised] = det.process([tel(0, temperature=31)])
    # Same rule id with a changed level: the active alarm stays (no second raise).
    changed = parse_rules(
        {
            "rules": [
                {"id": "hot", "kind": "threshold", "metric": "temperature", "above": 35},
                {"id": "quiet", "kind": "deadman", "silence": "60s"},
            ]
        }
    )
    assert det.reload(changed) == []
    assert det.active_alarms()[0][1] == raised.data.alarm_id
    assert kinds(det.process([tel(1, temperature=20)])) == ["cleared"]
    det.process([tel(2, temperature=40)])
    removed = parse_rules({"rules": [{"id": "quiet", "kind": "deadman", "silence": "60s"}]})
    [cleared] = det.reload(removed)
    assert isinstance(cleared, AlarmClearedEvent)
    assert cleared.data.message == "rule removed"


def test_restart_from_snapshot_no_double_raise_and_no_lost_clear():
    det = DeviceDetector("s1", "d1", RULES)
    first = tel(0, temperature=31)
    [raised] = det.process([first])
    state = json.loads(json.dumps(det.snapshot()))  # plain data
    again = DeviceDetector("s1", "d1", RULES, state=state)
    assert again.process([first]) == []  # re-delivered after the restart
    [cleared] = again.process([tel(1, temperature=20)])
    assert cleared.data.alarm_id == raised.data.alarm_id
    # A snapshot taken with a rule that is gone clears that alarm on the next input.
    gone = DeviceDetector("s1", "d1", parse_rules({"rules": []}), state=state)
    [cleared2] = gone.process([tel(5, temperature=20)])
    assert cleared2.data.alarm_id == raised.data.alarm_id


def test_acknowledge_through_the_engine():
    det = DeviceDetector("s1", "d1", RULES)
    [raised] = det.process([tel(0, temperature=31)])
    [ack] = det.acknowledge(raised.data.alarm_id, "ops", at(3))
    assert isinstance(ack, AlarmAcknowledgedEvent)
    assert ack.data.acknowledged_at == at(3)
    assert det.acknowledge("no-such-alarm", "ops") == []


def test_default_rules_learn_every_series():
    det = DeviceDetector("s1", "d1", default_rules())
    events = []
    for i in range(200):
        events += det.process([tel(i, temperature=20 + 0.1 * (i % 5), humidity=40 + 0.2 * (i % 3))])
    assert events == []
    [raised] = det.process([tel(200, temperature=35, humidity=40)])
    assert raised.data.rule == "anomaly"
    assert raised.data.metric == "temperature"
    assert "component: prediction error" in raised.data.message
    slots = det.snapshot()["slots"]
    assert {k.split("\x1f")[1] for k in slots} == {"anomaly", "deadman", "offline"}


def test_accepted_items_measure_silence_on_arrival_time():
    from dataflows.ingest import Accepted

    det = DeviceDetector("s1", "d1", RULES)
    arrival = datetime(2030, 1, 1, tzinfo=UTC)  # a replay of old data, arriving now
    assert det.process([Accepted(tel(0, temperature=20), arrival)]) == []
    arrival_us = int(arrival.timestamp()) * S
    assert det.next_wake_us() == arrival_us + 60 * S
    assert det.tick(arrival_us + 30 * S) == []  # event time is years behind: not silence
    [raised] = det.tick(arrival_us + 60 * S)
    assert raised.data.rule == "quiet"


def test_series_deadman_and_flatline_through_the_engine():
    rules = parse_rules(
        {
            "rules": [
                {
                    "id": "hum-quiet",
                    "kind": "deadman",
                    "scope": "series",
                    "metric": "humidity",
                    "silence": "30s",
                },
                {"id": "stuck", "kind": "flatline", "metric": "temperature", "duration": "20s"},
            ]
        }
    )
    det = DeviceDetector("s1", "d1", rules)
    det.process([tel(0, temperature=20, humidity=40)])
    events = []
    for s in range(1, 40):
        events += det.tick(T0_US + s * S)
        events += det.process([tel(s, temperature=20)])  # humidity stopped, temperature flat
    assert [(e.data.rule, e.data.metric) for e in events] == [
        ("stuck", "temperature"),
        ("hum-quiet", "humidity"),
    ]
    cleared = det.process([tel(40, temperature=21, humidity=41)])
    assert sorted(e.data.rule for e in cleared) == ["hum-quiet", "stuck"]
