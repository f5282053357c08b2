"""The bench-fleet table: one row per case, every column filled from the case's figures."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from gateway.bench.fleet import FleetBenchReport
from gateway.bench.fleet_report import build_fleet_table, summary


def _case(runner: str, **result: Any) -> dict[str, Any]:
    return {
        "workload": "20k x 1/10s",
        "runner": runner,
        "devices": 20_000,
        "target_events_per_s": 2_000,
        "broker": {"cpu_share_of_case": 0.31},
        "load_average": {"start": [1.5, 1.2, 1.0], "end": [2.5, 1.4, 1.1]},
        "result": {
            "connections": {"after_ramp": 19_993, "at_end": 19_993, "ramp_s": 41.2},
            "events": 120_000,
            "acknowledged": 120_000,
            "events_per_s": 1_998.0,
            "puback": {"p50_s": 0.012, "p99_s": 0.064},
            "steady": {"cpu_share": 0.26, "cpu_s": 15.6, "wall_s": 60.0, "run_queue_wait_s": 6.0},
            "peak_rss_bytes": 812_000_000,
            **result,
        },
    }


def test_each_case_is_one_row_with_its_figures() -> None:
    cases = [
        _case("asyncio", publish_to_puback={"p99_s": 0.058}, lag={"p99_s": 0.004}),
        _case("threads", error="broker went away", stranded=7),
    ]
    report = FleetBenchReport(
        options={"duration_s": 60.0}, machine={"load_average_at_start": [1.5]},
        versions={}, started_at="2026-11-30T00:00:00Z", cases=cases,
    )  # fmt: skip
    assert summary(cases[0])["cpu_per_event_us"] == 130  # 15.6 s / 120,000 events
    table = build_fleet_table(report)
    assert table.row_count == 2
    console = Console(width=400, record=True)
    console.print(table)
    text = console.export_text()
    assert "19,993 / 20,000" in text
    assert "threads (failed)" in text
    assert "(7 stranded)" in text
    assert "0.10" in text  # waited for CPU: 6 s of 60
