"""The device step runs the detector: alarms from telemetry, last will, acknowledgement."""

from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.testing import TestingSink, TestingSource, run_main

from contract import (
    AlarmAcknowledgedEvent,
    AlarmClearedEvent,
    AlarmRaisedEvent,
    DeviceOfflineEvent,
    DeviceOnlineEvent,
    Reading,
    TelemetryEvent,
    TopicKind,
    TopicScheme,
    encode,
)
from contract.commands import AcknowledgeAlarmCommand
from dataflows.batch import MessageBatch
from dataflows.eventclock import to_us
from dataflows.flow import ActiveAlarms, StaticRules, build_flow
from dataflows.rules import parse_rules

RawMessage = tuple[str, bytes, datetime]

RULES = parse_rules(
    {
        "defaults": {"offline": True},
        "rules": [{"id": "hot", "kind": "threshold", "metric": "t", "above": 30, "clear": 28}],
    }
)


def _telemetry(scheme: TopicScheme, seq: int, value: float, at: datetime) -> RawMessage:
    event = TelemetryEvent.create(
        site="s",
        device="d",
        sequence=seq,
        readings=[Reading(sensor="x", metric="t", value=value, time=at)],
    )
    return (scheme.telemetry("s", "d"), encode(event), at)


def _batches(messages: list[RawMessage]) -> list[MessageBatch]:
    """One batch per message, as a slow source would hand them over."""
    return [MessageBatch([t], [p], [to_us(at)]) for t, p, at in messages]


def _run(messages: list[RawMessage]) -> tuple[list[Any], list[Any]]:
    points: list[Any] = []
    alarms: list[Any] = []
    flow = build_flow(
        TestingSource(_batches(messages)),
        topics=TopicScheme(),
        points_sink=TestingSink(points),
        deadletter_sink=TestingSink([]),
        alarm_sink=TestingSink(alarms),
        rules=StaticRules(RULES),
    )
    run_main(flow)
    return points, alarms


def test_threshold_raises_is_acknowledged_and_clears_with_a_summary_each_time() -> None:
    scheme = TopicScheme()
    t0 = datetime.now(UTC) - timedelta(seconds=30)
    msgs = [_telemetry(scheme, 1, 20.0, t0), _telemetry(scheme, 2, 35.0, t0 + timedelta(seconds=1))]
    points, alarms = _run(msgs)
    raised = [a for a in alarms if isinstance(a, AlarmRaisedEvent)]
    assert len(raised) == 1
    assert raised[0].data.rule == "hot"
    raised_id = raised[0].data.alarm_id
    ack = AcknowledgeAlarmCommand.create(site="s", device="d", alarm_id=raised_id, by="ops")
    msgs += [
        (scheme.device("s", "d", TopicKind.COMMANDS), encode(ack), t0),
        _telemetry(scheme, 3, 20.0, t0 + timedelta(seconds=2)),
    ]
    points, alarms = _run(msgs)
    kinds = [type(a).__name__ for a in alarms if not isinstance(a, ActiveAlarms)]
    assert kinds == ["AlarmRaisedEvent", "AlarmAcknowledgedEvent", "AlarmClearedEvent"]
    acked = next(a for a in alarms if isinstance(a, AlarmAcknowledgedEvent))
    assert acked.data.acknowledged_by == "ops"
    cleared = next(a for a in alarms if isinstance(a, AlarmClearedEvent))
    assert cleared.data.alarm_id == raised_id
    assert cleared.data.acknowledged_by == "ops"
    summaries = [a for a in alarms if isinstance(a, ActiveAlarms)]
    assert [len(s.alarms) for s in summaries] == [1, 1, 0]
    assert not any(isinstance(p, ActiveAlarms | AlarmRaisedEvent) for p in points)


def test_last_will_raises_offline_and_birth_clears_it() -> None:
    scheme = TopicScheme()
    started = datetime.now(UTC) - timedelta(minutes=5)
    # The will is built at connect time, before the birth: dated by arrival instead.
    will = DeviceOfflineEvent.create(site="s", device="d", time=started, reason="connection lost")
    birth = DeviceOnlineEvent.create(site="s", device="d", time=started + timedelta(seconds=1))
    status = scheme.status("s", "d")
    now = datetime.now(UTC)
    msgs = [
        (status, encode(birth), now - timedelta(seconds=3)),
        (status, encode(will), now - timedelta(seconds=2)),
        (status, encode(birth), now - timedelta(seconds=1)),
    ]
    _, alarms = _run(msgs)
    events = [a for a in alarms if not isinstance(a, ActiveAlarms)]
    assert [type(a).__name__ for a in events] == ["AlarmRaisedEvent", "AlarmClearedEvent"]
    assert events[0].data.rule == "offline"


def test_site_pattern_across_devices_raises_a_site_alarm() -> None:
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
                        {"member": "a/*/t", "op": ">", "value": 30},
                        {"member": "b/*/t", "op": ">", "value": 30},
                    ],
                }
            ]
        }
    )
    scheme = TopicScheme()
    t0 = datetime.now(UTC) - timedelta(seconds=30)
    msgs = []
    for i, device in enumerate(["a", "b"]):
        event = TelemetryEvent.create(
            site="s",
            device=device,
            sequence=1,
            readings=[Reading(sensor="x", metric="t", value=31.0, time=t0 + timedelta(seconds=i))],
        )
        msgs.append((scheme.telemetry("s", device), encode(event), t0))
    alarms: list[Any] = []
    flow = build_flow(
        TestingSource(_batches(msgs)),
        topics=scheme,
        points_sink=TestingSink([]),
        deadletter_sink=TestingSink([]),
        alarm_sink=TestingSink(alarms),
        rules=StaticRules(rules),
    )
    run_main(flow)
    raised = [a for a in alarms if isinstance(a, AlarmRaisedEvent)]
    assert [(a.data.device, a.data.rule) for a in raised] == [("_site", "two-hot")]
    assert [s.device for s in alarms if isinstance(s, ActiveAlarms)] == ["_site"]


def test_deadman_silence_counts_from_a_restart_not_from_before_the_downtime() -> None:
    from dataflows.eventclock import FakeClock
    from tests.dataflows.shard_kit import alarm_events, processor, send, telemetry

    rules = parse_rules({"defaults": {"deadman": "1m"}})
    clock = FakeClock(1_000_000_000_000)
    t = datetime.fromtimestamp(clock.t / 1e6, UTC)
    proc = processor(clock, rules=rules)
    send(proc, [telemetry(1, t)])
    state = proc.snapshot()
    clock.advance(600)  # ten minutes down
    restored = processor(clock, rules=rules, state=state)
    assert not alarm_events(restored.tick())
    clock.advance(61)
    assert restored.next_wake_us() is not None
    assert [a.data.rule for a in alarm_events(restored.tick())] == ["deadman"]
