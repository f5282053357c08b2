"""The aggregates a burst owes, the wait for them, and the CPU span they extend."""

from __future__ import annotations

import time
from typing import Any

import pytest
from rich.console import Console

from dataflows.windows import parse_window
from gateway.bench.aggregates import AggregatesDone, plan_aggregates, watch_aggregates
from gateway.bench.influxd import WriteStats
from gateway.bench.measure import Completion, Snapshot
from gateway.bench.report import build_table, exit_code, print_report, problems
from gateway.bench.results import BenchReport, RoundResult, summarize
from gateway.bench.round_figures import fill_aggregate_figures
from gateway.bench.workload import Workload, iter_readings

BASE = 1_764_504_003_123_000  # 2025-11-30T12:00:03.123Z: windows do not start at the burst


def _brute_force(workload: Workload, base_us: int, windows: tuple[str, ...]) -> int:
    """Every (series, window start) pair, reading by reading, as the gateway opens them."""
    specs = [parse_window(w) for w in windows]
    pairs = set()
    for device, sensor, metric, _value, t in iter_readings(workload, base_us):
        for spec in specs:
            for start in spec.starts_for(t):
                pairs.add((device, sensor, metric, spec.name, start))
    return len(pairs)


@pytest.mark.parametrize(
    "workload",
    [
        Workload(devices=5, readings_per_message=10, total=10 * 23, sensors_per_device=10),
        # rpm > sensors: a series has several readings per message (series100k's shape).
        Workload(devices=4, readings_per_message=50, total=50 * 9, sensors_per_device=10),
        # Fewer messages than devices; and a long burst crossing minute boundaries.
        Workload(devices=50, readings_per_message=20, total=20 * 7, sensors_per_device=20),
        Workload(devices=2, readings_per_message=5, total=5 * 250, sensors_per_device=3),
    ],
)
@pytest.mark.parametrize("windows", [("10s", "1m"), ("30s/10s",), ("1s", "5m/1m")])
def test_the_plan_counts_every_series_window_pair(
    workload: Workload, windows: tuple[str, ...]
) -> None:
    plan = plan_aggregates(workload, BASE, windows)
    assert plan.expected == _brute_force(workload, BASE, windows)
    assert sum(plan.by_window.values()) == plan.expected


def test_the_peer_burst_owes_three_10s_windows_and_one_minute_per_series() -> None:
    plan = plan_aggregates(Workload(), BASE, ("10s", "1m"))
    # 1,000 devices x 50 series; event time 12:00:03.123 to 12:00:22.172.
    assert plan.by_window == {"10s": 150_000, "1m": 50_000}
    assert plan.last_event_us == BASE + 19_000_000 + 49_000
    assert plan.last_window_end_us == BASE - 3_123_000 + 60_000_000
    # 2 x quiet + lateness, plus the last window's end beyond the last event.
    beyond = (plan.last_window_end_us - plan.last_event_us) / 1e6
    assert plan.close_after_s(10.0, 10.0) == pytest.approx(30.0 + beyond)


class FakeInfluxd:
    """Write statistics that follow a script of point counts, one per look."""

    def __init__(self, points: list[int]) -> None:
        self.points = points

    def write_stats(self) -> WriteStats:
        value = self.points.pop(0) if len(self.points) > 1 else self.points[0]
        return WriteStats(value, 0, 0)


class FakeTree:
    """CPU that grows by 0.1 s per look."""

    def __init__(self) -> None:
        self.cpu = 0.0

    def cpu_seconds(self) -> float:
        self.cpu += 0.1
        return self.cpu

    def rss_bytes(self) -> int:
        return 2_000_000

    def alive(self) -> bool:
        return True


def _counter(values: list[float]) -> Any:
    def written() -> float:
        return values.pop(0) if len(values) > 1 else values[0]

    return written


def _watch(points: list[int], aggregates: list[float], **kw: Any) -> AggregatesDone:
    fake: Any = FakeInfluxd(points)
    tree: Any = FakeTree()
    # The readings' last sample: its `claimed` is the readings' count, not aggregates'.
    after = Snapshot(time.monotonic(), 1_000, 10, 0, 1.0, 1.0, 1_000_000, claimed=1_000.0)
    return watch_aggregates(
        fake,
        tree,
        tree,
        after=after,
        written=_counter(aggregates),
        interval_s=0.001,
        **kw,
    )


def test_the_wait_ends_when_every_aggregate_is_written() -> None:
    done = _watch([1_000, 1_000, 1_150, 1_200], [0, 0, 150, 200], expected=200, close_by=0.0)
    assert done.outcome == "complete"
    assert done.written == 200
    assert done.end.point_req == 1_200
    assert done.end is done.last
    assert done.peak_rss == 2_000_000


def test_a_short_count_is_reported_once_past_the_close_and_still() -> None:
    done = _watch([1_000, 1_100], [0, 100], expected=200, close_by=0.0, still_s=0.02)
    assert done.outcome == "stopped short"
    assert done.written == 100
    # The end of the CPU span is the last change, not the end of the wait.
    assert done.end.point_req == 1_100
    assert done.last.t - done.end.t >= 0.02


def test_a_short_count_is_not_given_up_before_the_windows_should_close() -> None:
    close_by = time.monotonic() + 0.1
    done = _watch([1_000], [0], expected=200, close_by=close_by, still_s=0.0)
    assert done.last.t >= close_by
    assert done.outcome == "stopped short"


def _completion() -> Completion:
    start = Snapshot(100.0, 0, 0, 0, 10.0, 2.0, 100_000_000)
    end = Snapshot(110.0, 1_000_000, 100, 0, 14.0, 12.0, 400_000_000)
    return Completion(start, end, end, 400_000_000, [start, end])


def _done(written: float, outcome: str = "complete") -> AggregatesDone:
    after = _completion().end
    # influxd is still absorbing right after a write; idle from 5 s on.
    quiet = Snapshot(120.0, 1_000_000, 100, 0, 14.0, 12.8, 300_000_000, claimed=0.0)
    still = Snapshot(130.0, 1_000_000, 100, 0, 14.5, 13.0, 300_000_000, claimed=0.0)
    idle = Snapshot(135.0, 1_000_000, 100, 0, 14.6, 13.2, 300_000_000, claimed=0.0)
    end = Snapshot(140.0, 1_200_000, 120, 0, 18.0, 15.0, 500_000_000, claimed=written)
    samples = [after, quiet, still, idle, end]
    return AggregatesDone(200_000, written, end, end, 500_000_000, outcome, samples)


def _gateway_round(written: float = 200_000, outcome: str = "complete") -> RoundResult:
    result = RoundResult("sensorgate", 1, expected=1_000_000, stored=1_000_000)
    result.seconds, result.readings_per_s = 10.0, 100_000.0
    result.peer_cpu_s, result.influxd_cpu_s, result.cpu_seconds = 10.0, 4.0, 10.0
    fill_aggregate_figures(result, _completion(), _done(written, outcome))
    return result


def test_cpu_figures_run_to_the_last_aggregate_and_the_rate_to_the_last_reading() -> None:
    r = _gateway_round()
    assert r.readings_per_s == 100_000.0
    assert (r.peer_cpu_s, r.influxd_cpu_s) == (13.0, 8.0)
    assert r.cpu_span == "readings+aggregates"
    assert r.cpu_seconds == 40.0
    assert r.extras["to_last_reading"] == {
        "seconds": 10.0,
        "peer_cpu_s": 10.0,
        "influxd_cpu_s": 4.0,
    }
    assert r.extras["after_last_reading_s"] == 30.0
    assert r.peak_rss_mb == 500.0
    assert (r.aggregates_written, r.aggregates_expected, r.aggregates_missing) == (
        200_000,
        200_000,
        0,
    )
    # Between samples where nothing had moved for 5 s: the idle cost inside the span.
    idle = r.extras["idle_while_waiting"]
    assert idle["seconds"] == 5.0
    assert idle["peer_cpu_share"] == pytest.approx(0.04)
    assert idle["influxd_cpu_share"] == pytest.approx(0.02)


def _report(results: list[RoundResult]) -> BenchReport:
    nodered = RoundResult("nodered", 1, expected=1_000_000, stored=1_000_000)
    nodered.readings_per_s, nodered.peer_cpu_s, nodered.influxd_cpu_s = 50_000.0, 11.0, 5.0
    report = BenchReport("t", "c", "peer", Workload().as_dict(), 1, ["sensorgate", "nodered"])
    report.results = [*results, nodered]
    report.summaries = summarize(report.results, {})
    return report


def test_the_table_says_which_span_and_compares_influxd_cost_with_node_red() -> None:
    report = _report([_gateway_round()])
    sg = report.summaries[0]
    assert sg.influxd_cpu_to_nodered == pytest.approx(8.0 / 5.0)
    assert sg.cpu_spans == ["readings+aggregates"]
    assert report.summaries[1].cpu_spans == ["readings"]
    console = Console(record=True, width=400)
    print_report(report, console)
    text = " ".join(console.export_text().split())  # the caption wraps
    assert "200,000 / 200,000" in text
    assert "13.0 +agg" in text
    assert "8.0 +agg" in text
    assert "1.60x" in text
    assert "last aggregate stored" in text
    assert "CPU to the last reading (10.0 s): gateway 10.0, influxd 4.0 s/M" in text
    assert exit_code(report) == 0


def test_missing_aggregates_are_shown_and_fail_the_run() -> None:
    report = _report([_gateway_round(written=150_000, outcome="stopped short")])
    console = Console(record=True, width=250)
    console.print(build_table(report))
    assert "MISSING 50,000" in console.export_text()
    assert problems(report) == [
        "sensorgate round 1: wrote 150,000 of 200,000 aggregates (stopped short); its CPU"
        " figures run to the end of the wait"
    ]
    assert exit_code(report) == 1
