"""The schedule is drift-free over simulated hours; missed ticks are skipped and counted."""

from __future__ import annotations

from datetime import timedelta

from edge.clock import FakeClock
from edge.drivers.base import Measurement
from edge.sampler import Sampler


class SlowDriver:
    """A driver whose every read takes ``cost`` seconds of (fake) time."""

    kind = "slow"

    def __init__(self, clock: FakeClock, cost: float, stall_at: int = -1, stall: float = 0.0):
        self.clock, self.cost, self.stall_at, self.stall = clock, cost, stall_at, stall
        self.n = 0

    def read(self) -> list[Measurement]:
        self.n += 1
        self.clock.advance(self.stall if self.n == self.stall_at else self.cost)
        return [Measurement("v", float(self.n))]

    def close(self) -> None:
        pass


def run_for(sampler: Sampler, clock: FakeClock, seconds: float) -> list:
    end = clock.monotonic() + seconds
    out = []
    while True:
        due = sampler.next_due()
        assert due is not None
        if due > end:
            return out
        clock.advance(max(0.0, due - clock.monotonic()))
        out.extend(sampler.sample_due())


def test_six_hours_at_one_second_do_not_drift() -> None:
    clock = FakeClock()
    t0 = clock.now()
    sampler = Sampler(clock)
    # every read costs 37 ms: "next = last + interval" would drift 13 minutes in 6 hours
    sampler.add("a", SlowDriver(clock, 0.037), 1.0)
    readings = run_for(sampler, clock, 6 * 3600)
    assert len(readings) == 6 * 3600 + 1
    assert readings[-1].time == t0 + timedelta(seconds=6 * 3600)
    assert all(r.time == t0 + timedelta(seconds=k) for k, r in enumerate(readings))
    assert sampler.slots["a"].missed == 0


def test_missed_ticks_are_skipped_and_counted() -> None:
    clock = FakeClock()
    t0 = clock.now()
    sampler = Sampler(clock)
    # read 10 stalls 5.5 s: ticks 10..14 pass while it runs
    sampler.add("a", SlowDriver(clock, 0.01, stall_at=10, stall=5.5), 1.0)
    readings = run_for(sampler, clock, 30)
    ticks = [round((r.time - t0).total_seconds(), 6) for r in readings]
    assert ticks[:10] == [float(k) for k in range(10)]
    assert ticks[10] == 15.0  # back on the grid, no burst of catch-up reads
    assert all(t == int(t) for t in ticks)
    assert sampler.slots["a"].missed == 5
    assert len(readings) == 31 - 5


def test_two_sensors_keep_their_own_grids_for_hours() -> None:
    clock = FakeClock()
    t0 = clock.now()
    sampler = Sampler(clock)
    sampler.add("fast", SlowDriver(clock, 0.002), 0.25)
    sampler.add("slow", SlowDriver(clock, 0.3), 7.0)
    readings = run_for(sampler, clock, 3 * 3600)
    fast = [r for r in readings if r.sensor == "fast"]
    slow = [r for r in readings if r.sensor == "slow"]
    assert len(slow) == 3 * 3600 // 7 + 1
    # stamped when read: at most one fast read (2 ms) late, and never later than that
    lateness = [
        (r.time - (t0 + timedelta(seconds=7 * k))).total_seconds() for k, r in enumerate(slow)
    ]
    assert max(lateness) <= 0.002
    assert min(lateness) >= 0
    offsets = {round((r.time - t0).total_seconds() % 0.25, 6) for r in fast}
    assert offsets == {0.0, 0.052}  # on the grid, or late behind the 300 ms read; no drift
    assert sampler.slots["fast"].missed == 0  # late by less than an interval: read, not skipped


def test_interval_change_reanchors_at_the_planned_tick() -> None:
    clock = FakeClock()
    t0 = clock.now()
    sampler = Sampler(clock)
    sampler.add("a", SlowDriver(clock, 0.0), 10.0)
    run_for(sampler, clock, 25)  # ticks at 0, 10, 20; next planned at 30
    sampler.set_interval("a", 2.0)
    after = run_for(sampler, clock, 15)  # the clock is at 20: up to 35
    assert [(r.time - t0).total_seconds() for r in after] == [30.0, 32.0, 34.0]
