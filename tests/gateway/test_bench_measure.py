"""Completion detection of the benchmark, against fake influxd statistics."""

from __future__ import annotations

from typing import Any

from gateway.bench.influxd import WriteStats
from gateway.bench.measure import Completion, Snapshot, take_snapshot, watch_until_stored
from gateway.bench.results import RoundResult
from gateway.bench.round_figures import fill_burst_figures


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


def _completion(outcome: str = "settled", final: int = 1_000_000) -> Completion:
    start = Snapshot(100.0, 5, 1, 0, 10.0, 2.0, 100_000_000)
    end = Snapshot(130.0, 5 + final, 21, 2, 19.0, 27.0, 400_000_000)
    last = Snapshot(133.0, 5 + final, 22, 3, 19.5, 27.2, 390_000_000)
    return Completion(start, end, last, 400_000_000, [start, end, last], outcome)


PUBLISHED = {"first_publish": 105.0, "acknowledged_s": 2.5, "all_acknowledged": True}


def test_figures_run_from_the_first_publish_to_the_last_point_stored() -> None:
    result = RoundResult("nodered", 1, expected=1_000_000)
    fill_burst_figures(result, _completion(), PUBLISHED, stored=1_000_000)
    assert result.error is None
    assert result.seconds == 25.0
    assert result.readings_per_s == 40_000.0
    assert result.peer_cpu_s == 25.0
    assert result.peer_cpu_s_per_m == 25.0
    assert result.influxd_cpu_s == 9.0
    assert result.peak_rss_mb == 400.0
    assert (result.points_written, result.write_requests, result.influxd_server_errors) == (
        1_000_000,
        21,
        3,
    )


def test_a_lossy_peer_is_timed_by_what_it_stored() -> None:
    result = RoundResult("nodered", 1, expected=1_000_000)
    fill_burst_figures(result, _completion(final=975_000), PUBLISHED, stored=975_000)
    assert result.readings_per_s == 39_000.0
    assert result.lost == 25_000
    assert result.error is None


def test_an_unsettled_burst_or_unacknowledged_publish_is_an_error() -> None:
    result = RoundResult("naive", 1, expected=1_000_000)
    fill_burst_figures(result, _completion("timeout"), PUBLISHED, stored=10)
    assert result.error == "the burst did not settle: timeout"
    result = RoundResult("naive", 1, expected=1_000_000)
    fill_burst_figures(
        result, _completion(), {**PUBLISHED, "all_acknowledged": False}, stored=1_000_000
    )
    assert result.error == "the broker did not acknowledge every message of the burst"
