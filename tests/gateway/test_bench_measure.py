"""Completion detection of the benchmark, against fake influxd statistics."""

from __future__ import annotations

from typing import Any

from gateway.bench.influxd import WriteStats
from gateway.bench.measure import take_snapshot, watch_until_stored


class FakeInfluxd:
    """Write statistics that grow by ``step`` per look until ``final``."""

    def __init__(self, final: int, step: int) -> None:
        self.final, self.step, self.points = final, step, 0

    def write_stats(self) -> WriteStats:
        self.points = min(self.final, self.points + self.step)
        return WriteStats(self.points, self.points // 10, 0)


class FakeTree:
    """A process tree whose CPU grows by 0.1 s per look."""

    def __init__(self) -> None:
        self.cpu = 0.0

    def cpu_seconds(self) -> float:
        self.cpu += 0.1
        return self.cpu

    def rss_bytes(self) -> int:
        return 1_000_000

    def alive(self) -> bool:
        return True


def _watch(influxd: FakeInfluxd, **kw: Any) -> Any:
    tree: Any = FakeTree()
    fake: Any = influxd
    influxd.step, step = 0, influxd.step
    start = take_snapshot(fake, tree, tree)
    influxd.step = step
    return watch_until_stored(fake, tree, tree, start=start, interval_s=0.001, **kw)


def test_the_end_is_the_look_at_which_the_count_last_moved() -> None:
    done = _watch(FakeInfluxd(final=1_000, step=100), expected=1_000, settle_s=0.02)
    assert done.outcome == "settled"
    assert done.points == 1_000
    assert done.end.point_req == 1_000
    assert done.samples[done.samples.index(done.end) - 1].point_req == 900
    assert done.last.t - done.end.t >= 0.02
    assert done.end.peer_cpu_s is not None
    assert done.peak_rss == 1_000_000


def test_a_short_count_is_given_longer_to_settle() -> None:
    done = _watch(FakeInfluxd(final=500, step=100), expected=1_000, settle_s=0.02)
    assert done.outcome == "settled"
    assert done.points == 500
    assert done.last.t - done.end.t >= 0.02 * 5


def test_nothing_stored_gives_up_after_the_first_point_timeout() -> None:
    done = _watch(FakeInfluxd(final=0, step=0), settle_s=0.02, first_point_timeout_s=0.05)
    assert done.outcome == "nothing stored"
    assert done.end is done.start
