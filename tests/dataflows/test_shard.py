"""The shard step: dedupe, event clocks, late readings, windows, restart, poison input."""

import math
import pickle
from datetime import UTC, datetime, timedelta

import pytest

from contract import DeadLetterReason
from dataflows.eventclock import FakeClock, FleetClock, to_us
from dataflows.observer import CountingObserver
from tests.dataflows.shard_kit import (
    aggregates,
    late,
    processor,
    readings,
    send,
    telemetry,
)

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
S = 1_000_000


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_duplicates_are_dropped_and_counted_and_write_nothing() -> None:
    clock = FakeClock(to_us(T0))
    obs = CountingObserver()
    proc = processor(clock, observer=obs)
    first = send(proc, [telemetry(1, T0), telemetry(2, _at(1))])
    again = send(proc, [telemetry(1, T0), telemetry(2, _at(1))])
    assert len(readings(first)) == 2
    assert readings(again) == []
    assert obs.counts["duplicates"] == 2
    # Twice in one batch: the second copy is the duplicate.
    twice = send(proc, [telemetry(3, _at(2)), telemetry(3, _at(2))])
    assert len(readings(twice)) == 1
    assert obs.counts["duplicates"] == 3


def test_windows_close_as_event_time_passes() -> None:
    clock = FakeClock(to_us(T0))
    proc = processor(clock, lateness_s=2)
    aggs = []
    for i in range(25):
        clock.t = to_us(T0) + i * S
        aggs += aggregates(send(proc, [telemetry(i, _at(i), value=float(i))]))
    # Windows [0,10) and [10,20) closed once the watermark (24 - 2) passed their ends.
    assert [(a.start_us - to_us(T0)) // S for a in aggs] == [0, 10]
    assert [a.count for a in aggs] == [10, 10]
    assert aggs[1].mean == 14.5


def test_windows_of_a_quiet_fleet_close_by_wall_clock() -> None:
    clock = FakeClock(to_us(T0))
    proc = processor(clock, lateness_s=5)  # quiet period defaults to the lateness
    send(proc, [telemetry(0, _at(3))])
    # Window [0,10) ends at T0+10. The fleet clock (capped at the wall clock, T0) moves
    # on by itself after 5 s of silence; the window closes once it passes 10 + 5 + 5.
    closed_at = None
    for step in range(1, 40):
        clock.t = to_us(T0) + step * S
        wake = proc.next_wake_us()
        assert wake is not None
        assert wake > clock.t
        if aggregates(proc.tick()):
            closed_at = step
            break
    assert closed_at == 22
    assert proc.next_wake_us() is None


def test_a_quiet_device_in_a_busy_fleet_closes_its_windows() -> None:
    clock = FakeClock(to_us(T0))
    fleet = FleetClock(2 * S)
    quiet = processor(clock, lateness_s=2, fleet=fleet)
    busy = processor(clock, lateness_s=2, fleet=fleet)
    send(quiet, [telemetry(0, _at(1), device="q")])
    for i in range(2, 40):
        clock.t = to_us(T0) + i * S
        send(busy, [telemetry(i, _at(i), device="b")])
        if aggregates(quiet.tick()):
            break
    # The fleet's event time passed 10 + L + Q = 14 s.
    assert clock.t == to_us(T0) + 14 * S


def test_a_backlog_drained_slower_than_real_time_is_not_late() -> None:
    clock = FakeClock(to_us(T0))
    obs = CountingObserver()
    proc = processor(clock, lateness_s=2, observer=obs)
    old = T0 - timedelta(hours=1)  # a broker queue an hour deep, drained at 1/10 speed
    closed = 0
    for i in range(60):
        for n in range(50):
            clock.advance(0.2)  # 10 s of wall clock per 1 s of event time
            out = send(proc, [telemetry(i, old + timedelta(seconds=i), device=f"d{n}")])
            closed += len(aggregates(out))
    assert obs.counts["late"] == 0
    assert closed >= 50 * 4  # windows close as the backlog's event time moves on


def test_late_reading_goes_to_late_output_and_never_reopens_a_window() -> None:
    clock = FakeClock(to_us(T0))
    obs = CountingObserver()
    proc = processor(clock, lateness_s=2, observer=obs)
    closed = []
    for i in range(20):
        clock.t = to_us(T0) + i * S
        closed += aggregates(send(proc, [telemetry(i, _at(i), value=1.0)]))
    assert [(a.start_us - to_us(T0)) // S for a in closed] == [0]
    straggler = send(proc, [telemetry(100, _at(4), value=999.0)])
    assert late(straggler) == [(to_us(_at(4)), 999.0)]
    assert obs.counts["late"] == 1
    # Its raw reading is still stored...
    assert ("d", "temp", to_us(_at(4)), 999.0) in readings(straggler)
    # ...but no window [0,10) is ever emitted again.
    clock.t += 100 * S
    rest = aggregates(proc.tick())
    assert all(a.start_us != to_us(T0) for a in rest)
    assert all(a.max < 999.0 for a in rest)


def test_out_of_order_within_lateness_is_on_time() -> None:
    clock = FakeClock(to_us(T0))
    obs = CountingObserver()
    proc = processor(clock, lateness_s=5, observer=obs)
    send(proc, [telemetry(1, _at(8))])
    out = send(proc, [telemetry(0, _at(4))])
    assert late(out) == []
    clock.t += 30 * S
    aggs = aggregates(proc.tick())
    assert [a.count for a in aggs] == [2]
    assert (aggs[0].first, aggs[0].last) == (1.0, 1.0)
    assert obs.counts["late"] == 0


def test_faults_are_stored_but_not_aggregated() -> None:
    clock = FakeClock(to_us(T0))
    proc = processor(clock)
    out = send(proc, [telemetry(0, T0, value=None, fault="crc")])
    rows = readings(out)
    assert len(rows) == 1
    assert math.isnan(rows[0][3])
    points = out.points[0]
    assert points.readings.faults == {0: "crc"}  # type: ignore[union-attr]
    assert proc.next_wake_us() is None


def test_restart_from_snapshot_keeps_dedupe_and_windows_and_ignores_downtime() -> None:
    clock = FakeClock(to_us(T0))
    proc = processor(clock, lateness_s=2)
    for i in range(5):
        clock.t = to_us(T0) + i * S
        send(proc, [telemetry(i, _at(i), value=float(i))])
    state = pickle.loads(pickle.dumps(proc.snapshot()))  # as Bytewax stores it
    # The gateway is down for a minute; then the broker re-delivers seq 4 and 5.
    clock.t += 60 * S
    back = processor(clock, lateness_s=2, state=state)
    out = send(back, [telemetry(4, _at(4), 4.0), telemetry(5, _at(5), 5.0)])
    assert [r[2] for r in readings(out)] == [to_us(_at(5))]
    assert late(out) == []
    clock.t += 60 * S
    aggs = aggregates(back.tick())
    assert [(a.count, a.mean) for a in aggs] == [(6, 2.5)]


def test_devices_batched_one_after_another_are_not_late() -> None:
    # The source hands a shard a device's whole backlog at once, device after device.
    clock = FakeClock(to_us(T0) + 300 * S)
    obs = CountingObserver()
    proc = processor(clock, lateness_s=2, observer=obs)
    for name in ("a", "b"):
        send(proc, [telemetry(i, _at(i), device=name) for i in range(60)])
    assert obs.counts["late"] == 0


def test_bad_messages_become_dead_letters_with_their_reason_and_bytes() -> None:
    clock = FakeClock(to_us(T0))
    obs = CountingObserver()
    proc = processor(clock, observer=obs)
    topic, good = telemetry(0, T0)
    other_topic, _ = telemetry(0, T0, device="other")
    out = send(
        proc,
        [
            (topic, b"nope"),
            (topic, good),
            (other_topic, good),  # published on another device's topic
            ("not/a/topic", good),
        ],
    )
    reasons = [(d.data.reason, d.data.payload) for d in out.deadletters]
    assert reasons == [
        (DeadLetterReason.NOT_JSON, b"nope"),
        (DeadLetterReason.TOPIC_MISMATCH, good),
        (DeadLetterReason.TOPIC_MISMATCH, good),
    ]
    assert len(readings(out)) == 1
    assert obs.counts["rejected:not_json"] == 1
    assert obs.counts["rejected:topic_mismatch"] == 2


@pytest.mark.parametrize("value", [1e308, -1e308, 5e-324, -5e-324, 0.0, -0.0])
def test_extreme_finite_values_are_stored_and_never_crash(value: float) -> None:
    clock = FakeClock(to_us(T0))
    proc = processor(clock, lateness_s=0)
    msgs = [telemetry(i, _at(i), value=(value if i % 2 else -value)) for i in range(12)]
    out = send(proc, msgs)
    assert len(readings(out)) == 12
    for agg in aggregates(out):
        assert math.isfinite(agg.mean)
        assert agg.stddev is None or math.isfinite(agg.stddev)
