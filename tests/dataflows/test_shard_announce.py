"""The shard's announcements: series first seen and windows closed, for Home Assistant."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

from dataflows.config import StreamConfig
from dataflows.eventclock import FakeClock, to_us
from dataflows.rules import StaticRules
from dataflows.shard import ShardProcessor
from dataflows.shard_output import Announcement, ShardOutput
from dataflows.windows import aggregates_of
from tests.dataflows.shard_kit import NO_RULES, SCHEME, send, telemetry

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
S = 1_000_000


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _shard(
    clock: FakeClock, *, announce: bool = True, state: dict[str, Any] | None = None
) -> ShardProcessor:
    return ShardProcessor(
        topics=SCHEME,
        config=StreamConfig.from_strings(("10s",), 2),
        rules=StaticRules(NO_RULES),
        clock=clock,
        announce=announce,
        state=state,
    )


def _series(out: ShardOutput) -> list[tuple[str, str, str, str]]:
    found = []
    for a in out.announcements:
        n = a.names
        found += [(n.site[i], n.device[i], n.sensor[i], n.metric[i]) for i in a.new_series]
    return found


def _closed(out: ShardOutput) -> list[tuple[str, str, int, float]]:
    found = []
    for a in out.announcements:
        if a.aggregates is not None:
            found += [
                (g.device, g.metric, g.count, g.mean) for g in aggregates_of(a.aggregates, a.names)
            ]
    return found


def test_each_series_is_announced_once_when_first_seen() -> None:
    clock = FakeClock(to_us(T0))
    proc = _shard(clock)
    first = send(proc, [telemetry(0, T0), telemetry(0, T0, device="e", metric="rh")])
    assert _series(first) == [("s", "d", "env", "temp"), ("s", "e", "env", "rh")]
    again = send(proc, [telemetry(1, _at(1)), telemetry(2, _at(2), metric="co2")])
    assert _series(again) == [("s", "d", "env", "co2")]
    assert send(proc, [telemetry(3, _at(3))]).announcements == []


def test_closed_windows_are_announced_with_their_values() -> None:
    clock = FakeClock(to_us(T0))
    proc = _shard(clock)
    closed = []
    for i in range(14):
        clock.t = to_us(T0) + i * S
        closed += _closed(send(proc, [telemetry(i, _at(i), value=float(i))]))
    assert closed == [("d", "temp", 10, 4.5)]
    # a quiet fleet's window closes on the timer, and is announced there too
    clock.t += 60 * S
    assert _closed(proc.tick()) == [("d", "temp", 4, 11.5)]


def test_a_restarted_shard_announces_what_it_restored_once() -> None:
    clock = FakeClock(to_us(T0))
    proc = _shard(clock)
    send(proc, [telemetry(0, T0), telemetry(1, _at(1), metric="rh")])
    state = pickle.loads(pickle.dumps(proc.snapshot()))
    back = _shard(clock, state=state)
    clock.t += S
    out = send(back, [telemetry(2, _at(2))])
    assert _series(out) == [("s", "d", "env", "temp"), ("s", "d", "env", "rh")]
    assert _series(send(back, [telemetry(3, _at(3))])) == []


def test_nothing_is_announced_unless_asked() -> None:
    clock = FakeClock(to_us(T0))
    proc = _shard(clock, announce=False)
    outs = [send(proc, [telemetry(i, _at(i))]) for i in range(14)]
    clock.t += 60 * S
    outs.append(proc.tick())
    assert all(o.announcements == [] for o in outs)


def test_the_flow_hands_announcements_to_the_announce_sink_only() -> None:
    from bytewax.testing import TestingSink, TestingSource, run_main

    from dataflows.batch import MessageBatch
    from dataflows.flow import build_flow

    now = datetime.now(UTC)
    batch = MessageBatch()
    for device in ("a", "b", "c"):
        topic, payload = telemetry(0, now, device=device)
        batch.append(topic, payload, to_us(now))
    points: list[Any] = []
    letters: list[Any] = []
    news: list[Any] = []
    flow = build_flow(
        TestingSource([batch]),
        topics=SCHEME,
        points_sink=TestingSink(points),
        deadletter_sink=TestingSink(letters),
        rules=StaticRules(NO_RULES),
        stream=StreamConfig(shards=2),
        announce_sink=TestingSink(news),
    )
    run_main(flow)
    seen = sorted(a.names.device[i] for a in news for i in a.new_series)
    assert seen == ["a", "b", "c"]
    assert all(isinstance(a, Announcement) for a in news)
    assert letters == []
    assert not any(isinstance(p, Announcement) for p in points)
