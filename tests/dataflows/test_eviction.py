"""Eviction of idle devices: bounded state that never changes what kept devices see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from contract.alarms import AlarmClearedEvent, AlarmEvent, AlarmRaisedEvent
from dataflows.config import StreamConfig
from dataflows.eventclock import FakeClock, to_us
from dataflows.observer import CountingObserver
from dataflows.rules import StaticRules, parse_rules
from dataflows.shard import ShardProcessor
from tests.dataflows.shard_kit import SCHEME, aggregates, readings, send, telemetry

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
S = 1_000_000

THRESHOLD = parse_rules(
    {"rules": [{"id": "hot", "kind": "threshold", "metric": "temp", "above": 50.0}]}
)


def _proc(clock: FakeClock, obs: CountingObserver, rules=None) -> ShardProcessor:
    config = StreamConfig.from_strings(("10s",), 2, shards=1, evict_idle_s=3600)
    return ShardProcessor(
        topics=SCHEME,
        config=config,
        rules=None if rules is None else StaticRules(rules),
        clock=clock,
        observer=obs,
    )


def _feed(proc, clock, times, devices, value=lambda i: 20.0 + (i % 7)):
    """One message per device at each time (seconds after T0; the sequence is the time)."""
    out = []
    for t in times:
        clock.t = to_us(T0) + t * S
        at = T0 + timedelta(seconds=t)
        out.append(send(proc, [telemetry(t, at, value(t), device=d) for d in devices]))
        out.append(proc.tick())
    return out


def _about(outs, device):
    aggs = [
        (a.start_us, a.count, a.mean) for o in outs for a in aggregates(o) if a.device == device
    ]
    alarms = [
        (e.type, e.data.rule, e.data.event_time, e.data.message)
        for o in outs
        for e in o.alarms
        if isinstance(e, AlarmEvent) and e.data.device == device
    ]
    return aggs, alarms


def _same(x: object, y: object) -> bool:
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, list | tuple) and isinstance(y, list | tuple):
        return len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y, strict=True))
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return bool(np.array_equal(x, y, equal_nan=True))
    return x == y


def test_an_idle_device_is_forgotten_and_the_others_see_no_difference() -> None:
    # One shard sees devices a and b; b goes silent and is evicted. Another shard only
    # ever sees a. Device a's aggregates and alarms are the same in both, throughout.
    obs = CountingObserver()
    clock_ab, clock_a = FakeClock(to_us(T0)), FakeClock(to_us(T0))
    with_b, alone = _proc(clock_ab, obs), _proc(clock_a, CountingObserver())
    first, gap = range(300), range(300, 4300, 20)
    out_b = _feed(with_b, clock_ab, first, ["a", "b"]) + _feed(with_b, clock_ab, gap, ["a"])
    out_a = _feed(alone, clock_a, first, ["a"]) + _feed(alone, clock_a, gap, ["a"])
    assert obs.counts["evicted_devices"] == 1
    assert obs.counts["evicted_series"] == 1
    assert with_b.registry.devices == ["a"]
    assert _about(out_b, "a") == _about(out_a, "a")
    assert _same(with_b.snapshot()["series_alarms"], alone.snapshot()["series_alarms"])
    # b's deadman alarm was raised while it was silent, and cleared when forgotten.
    b_alarms = [
        e for o in out_b for e in o.alarms if isinstance(e, AlarmEvent) and e.data.device == "b"
    ]
    assert [type(e) for e in b_alarms] == [AlarmRaisedEvent, AlarmClearedEvent]
    assert "forgotten after 1 h of silence" in b_alarms[-1].data.message


def test_a_forgotten_device_alarm_is_cleared_and_an_open_window_waits() -> None:
    obs = CountingObserver()
    clock = FakeClock(to_us(T0))
    proc = _proc(clock, obs, THRESHOLD)
    out = _feed(proc, clock, range(5), ["hot"], value=lambda i: 99.0)
    assert any(isinstance(e, AlarmRaisedEvent) for o in out for e in o.alarms)
    clock.t = to_us(T0) + 2 * 3600 * S
    cleared = proc.evict_idle(clock.t)
    # Its window [0, 10 s) never closed (nothing moved the clock past it): it waits.
    assert proc.registry.devices == ["hot"]
    assert cleared == []
    # Another device moves the fleet's clock: the window closes, then "hot" goes.
    out = _feed(proc, clock, [2 * 3600], ["other"])
    cleared = [e for o in out for e in o.alarms if isinstance(e, AlarmEvent)]
    assert [type(e) for e in cleared] == [AlarmClearedEvent]
    assert cleared[0].data.device == "hot"
    assert proc.registry.devices == ["other"]
    assert obs.counts["evicted_devices"] == 1


def test_a_forgotten_device_that_comes_back_is_a_new_device() -> None:
    obs = CountingObserver()
    clock = FakeClock(to_us(T0))
    proc = _proc(clock, obs)
    _feed(proc, clock, range(20), ["x", "y"])
    _feed(proc, clock, range(20, 7200, 600), ["z"])
    assert obs.counts["evicted_devices"] == 2
    back = _feed(proc, clock, range(7200, 7203), ["y"])
    assert sum(len(readings(o)) for o in back) == 3
    assert proc.registry.devices == ["z", "y"]
    # Its state snapshots and restores like any other.
    restored = ShardProcessor(topics=SCHEME, config=proc.config, clock=clock, state=proc.snapshot())
    assert restored.registry.devices == ["z", "y"]
    again = send(restored, [telemetry(7201, T0 + timedelta(seconds=7201), device="y")])
    assert readings(again) == []
