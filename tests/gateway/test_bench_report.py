"""The benchmark's summaries, table, JSON and chart, built from made-up results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from gateway.bench.measure import Snapshot
from gateway.bench.report import (
    build_table,
    chart,
    exit_code,
    print_report,
    problems,
    report_json,
)
from gateway.bench.results import BenchReport, RoundResult, summarize
from gateway.bench.storage import quantile, sustained_rate
from gateway.bench.workload import Workload

M = 1_000_000


def _round(peer: str, n: int, rate: float, cpu: float | None, **kw: object) -> RoundResult:
    r = RoundResult(peer, n, expected=M, stored=kw.pop("stored", M))  # type: ignore[arg-type]
    r.seconds = M / rate
    r.readings_per_s = rate
    r.peer_cpu_s = cpu
    r.influxd_cpu_s = 9.0
    r.peak_rss_mb = 300.0 + n
    for key, value in kw.items():
        setattr(r, key, value)
    return r


def _results() -> list[RoundResult]:
    return [
        _round("sensorgate", 1, 30_000, 25.0),
        _round("nodered", 1, 45_000, 20.0, stored=M - 25_000, influxd_server_errors=3),
        _round("influxd", 1, 200_000, None),
        _round("sensorgate", 2, 36_000, 23.0),
        _round("nodered", 2, 40_000, 22.0),
        _round("influxd", 2, 100_000, None),
        _round("sensorgate", 3, 33_000, 24.0),
        _round("nodered", 3, 50_000, 21.0),
        _round("influxd", 3, 150_000, None),
    ]


def _report(results: list[RoundResult]) -> BenchReport:
    report = BenchReport(
        started_at="2026-11-30T12:00:00Z",
        command="sensorgate bench",
        scenario="peer",
        workload=Workload().as_dict(),
        rounds=3,
        peers=["sensorgate", "nodered", "influxd"],
        machine={"cpus": 2},
        versions={"node-red": "4.1.15"},
        results=results,
    )
    report.summaries = summarize(results, {"nodered": "Node-RED"})
    return report


def test_summaries_take_median_and_range_over_rounds() -> None:
    by_peer = {s.peer: s for s in summarize(_results(), {})}
    sg = by_peer["sensorgate"]
    assert (sg.rate_median, sg.rate_min, sg.rate_max) == (33_000, 30_000, 36_000)
    assert sg.peer_cpu_s_per_m == pytest.approx(24.0)
    assert sg.influxd_cpu_s_per_m == pytest.approx(9.0)
    assert sg.peak_rss_mb == 303.0
    assert sg.fraction_of_ceiling == pytest.approx(33_000 / 150_000)
    assert sg.ratio_to_nodered == pytest.approx(33_000 / 45_000)
    assert by_peer["nodered"].ratio_to_nodered == pytest.approx(1.0)
    assert by_peer["influxd"].fraction_of_ceiling == pytest.approx(1.0)
    assert by_peer["influxd"].peer_cpu_s_per_m is None


def test_losses_are_counted_and_shown() -> None:
    report = _report(_results())
    nodered = next(s for s in report.summaries if s.peer == "nodered")
    assert nodered.lost == 25_000
    assert nodered.complete_rounds == 2
    console = Console(record=True, width=200)
    console.print(build_table(report))
    text = console.export_text()
    assert "LOST 25,000" in text
    assert "33,000 (30,000-36,000)" in text
    for peer in ("sensorgate", "nodered", "influxd"):
        assert peer in text
    assert problems(report) == [
        "nodered round 1: stored 975,000 of 1,000,000 readings (lost 25,000;"
        " influxd answered 3 writes with 5xx)"
    ]


def test_a_peer_losses_alone_do_not_fail_the_run_but_sensorgate_losses_do() -> None:
    assert exit_code(_report(_results())) == 0
    lossy = _results()
    lossy[0].stored = M - 1
    assert exit_code(_report(lossy)) == 1
    failed = _results()
    failed[2].error = "influxd refused a write"
    assert exit_code(_report(failed)) == 1


def test_json_has_rounds_summaries_and_derived_figures() -> None:
    doc = json.loads(report_json(_report(_results())))
    assert doc["command"] == "sensorgate bench"
    assert doc["workload"]["messages"] == 20_000
    assert doc["versions"]["node-red"] == "4.1.15"
    assert len(doc["results"]) == 9
    first = doc["results"][0]
    assert first["peer_cpu_s_per_m"] == 25.0
    assert first["lost"] == 0
    assert {s["peer"] for s in doc["summaries"]} == {"sensorgate", "nodered", "influxd"}
    assert next(s for s in doc["summaries"] if s["peer"] == "nodered")["lost"] == 25_000


def test_a_failed_round_has_no_figures_and_is_a_problem() -> None:
    results = [RoundResult("naive", 1, expected=M, error="naive exited", outcome="failed")]
    report = _report(results)
    summary = report.summaries[0]
    assert summary.stored is None
    assert summary.rate_median is None
    assert problems(report) == ["naive round 1: naive exited"]
    console = Console(record=True, width=200)
    console.print(build_table(report))
    assert "? / 1,000,000" in console.export_text()


def test_chart_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "bench.png"
    chart(_report(_results()), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quantile_interpolates_within_a_bucket() -> None:
    before = [(0.1, 0.0), (1.0, 0.0), (float("inf"), 0.0)]
    after = [(0.1, 50.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert quantile(before, after, 0.5) == pytest.approx(0.1)
    assert quantile(before, after, 0.99) == pytest.approx(0.982)
    assert quantile(after, after, 0.5) is None


def test_sustained_rate_skips_start_up_and_tail() -> None:
    def snap(t: float, claimed: float) -> Snapshot:
        return Snapshot(t, 0, 0, 0, 0.0, 0.0, 0, claimed)

    samples = [snap(0, 0), snap(1, 0), snap(2, 500), snap(3, 1_500), snap(4, 2_500), snap(5, 2_500)]
    assert sustained_rate(samples) == pytest.approx(1_000.0)
    assert sustained_rate([snap(0, 0), snap(1, 0)]) is None


def test_the_paced_phase_reports_the_gateways_cpu_per_reading() -> None:
    from gateway.bench.runner import paced_cpu

    latency: dict[str, object] = {
        "rate_readings_per_s": 5_000.0,
        "stored": 50_000.0,
        "arrival_to_stored_p99_s": 0.4,
        "fleet": "burst",
    }
    latency.update(paced_cpu(3.0, 12.0, latency))
    assert latency["gateway_cpu_us_per_reading"] == 60.0
    assert latency["gateway_core_share"] == 0.25
    r = _round("sensorgate", 1, 30_000, 25.0)
    r.extras["latency"] = latency
    console = Console(record=True, width=400)
    print_report(_report([r]), console)
    text = console.export_text()
    assert "gateway CPU 60.0 µs per reading (25.0% of a core)" in text
    assert "at 5,000 readings/s (the burst's own devices)," in text
    assert "gateway_cpu_us_per_reading" not in paced_cpu(1.0, 2.0, {"stored": 0})
