"""``sensorgate bench-adapters``: the dialect bursts, their expected counts, the report."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from rich.console import Console

from contract.errors import ConfigError
from dataflows.adapters import AdapterSet, parse_adapters
from dataflows.adapters.result import AdapterError
from gateway.bench.adapters_report import build_table, chart, exit_code, problems
from gateway.bench.adapters_results import AdaptersReport, per_core, summarize_dialects
from gateway.bench.dialects import (
    BENCH_DIALECTS,
    adapters_toml,
    carried_per_message,
    dialect_workload,
    reading_messages,
    render_dialect_burst,
)
from gateway.bench.publisher import publisher_argv
from gateway.bench.results import BenchReport, RoundResult
from gateway.bench.workload import Workload
from gateway.cli import build_parser, run_command

SMALL = Workload(devices=7, readings_per_message=10, total=700, sensors_per_device=10)
FOREIGN = [d for d in BENCH_DIALECTS if d != "native"]


def _adapt_all(
    dialect: str, workload: Workload
) -> tuple[int, int, set[tuple[str, ...]], list[AdapterError]]:
    """Run a rendered burst through the bench's own adapters file; count what comes out."""
    burst = render_dialect_burst(workload, dialect)
    text = adapters_toml(dialect)
    assert text is not None
    adapters = AdapterSet(parse_adapters(tomllib.loads(text)))
    readings = status = 0
    series: set[tuple[str, ...]] = set()
    errors: list[AdapterError] = []
    received = burst.base_us + 600_000_000
    for topic, payload in zip(burst.topics, burst.payloads, strict=True):
        result = adapters.adapt(topic, payload, received)
        assert result is not None, f"no adapter takes {topic!r}"
        errors += result.errors
        status += len(result.status)
        for tel in result.telemetry:
            readings += len(tel)
            pairs = zip(tel.sensor, tel.metric, strict=True)
            series |= {(tel.site, tel.device, s, m) for s, m in pairs}
    return readings, status, series, errors


@pytest.mark.parametrize("dialect", FOREIGN)
def test_the_expected_count_is_what_the_adapter_reads_from_the_messages(dialect: str) -> None:
    burst = render_dialect_burst(SMALL, dialect)
    readings, status, series, errors = _adapt_all(dialect, SMALL)
    assert errors == []
    assert readings == burst.readings
    per = carried_per_message(SMALL, dialect)
    assert burst.readings == burst.workload.messages * per
    # every reading of a message is its own series: nothing collapses in the dialect
    assert len(series) == SMALL.devices * per
    assert {s[0] for s in series} == {"bench"}
    # one online message per device, except Telegraf (no availability); Sparkplug's
    # birth is status and carries readings
    assert status == (0 if dialect == "telegraf" else 7)
    # retained messages carry no readings: availability, LWT, online, and Home
    # Assistant's discovery config per entity (10 per device) before its availability
    no_readings = {"sparkplug": 0, "telegraf": 0, "homeassistant": 7 * (per + 1)}
    assert burst.status_messages == no_readings.get(dialect, 7)
    assert sum(burst.retain) == burst.status_messages
    # one message per tick, except Shelly Gen1: one message per value
    assert burst.reading_messages == burst.readings // (1 if dialect == "shelly1" else per)
    assert reading_messages(SMALL, dialect) == (
        burst.readings // burst.reading_messages,
        burst.reading_messages,
    )


def test_shelly1_and_homeassistant_bursts_look_like_their_devices() -> None:
    gen1 = render_dialect_burst(SMALL, "shelly1")
    assert gen1.workload.readings_per_message == 8  # eight Gen1 value topics
    assert gen1.topics[:3] == [
        "shellies/dev-000000/online",
        "shellies/dev-000000/sensor/temperature",
        "shellies/dev-000000/sensor/humidity",
    ]
    float(gen1.payloads[1])  # a plain number
    ha = render_dialect_burst(SMALL, "homeassistant")
    assert ha.topics[0] == "homeassistant/sensor/dev-000000/m0/config"
    config = json.loads(ha.payloads[0])
    assert (config["stat_t"], config["val_tpl"]) == (
        "sim-ha/dev-000000/state",
        "{{ value_json.m0 }}",
    )
    assert ha.topics[10:12] == ["sim-ha/dev-000000/availability", "sim-ha/dev-000000/state"]
    assert sorted(json.loads(ha.payloads[11])) == sorted(f"m{j}" for j in range(10))


def test_native_is_the_benchmark_burst_itself() -> None:
    burst = render_dialect_burst(SMALL, "native")
    assert burst.readings == SMALL.total
    assert len(burst.payloads) == SMALL.messages
    assert not any(burst.retain)
    assert adapters_toml("native") is None
    assert json.loads(burst.payloads[0])["type"] == "io.sensorgate.telemetry.reported.v1"


def test_shelly_carries_at_most_five_readings_and_keeps_the_total_whole() -> None:
    w = Workload(devices=3, readings_per_message=10, total=1_000, sensors_per_device=10)
    shelly = dialect_workload(w, "shelly")
    assert (shelly.readings_per_message, shelly.total, shelly.messages) == (5, 1_000, 200)
    assert dialect_workload(w, "tasmota") is w
    odd = Workload(devices=3, readings_per_message=3, total=999, sensors_per_device=3)
    assert dialect_workload(odd, "shelly") is odd


def test_an_unknown_dialect_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="zigbee2mqtt"):
        render_dialect_burst(SMALL, "modbus")


def test_the_publisher_is_told_the_dialect() -> None:
    argv = publisher_argv(SMALL, host="127.0.0.1", port=1883, dialect="tasmota")
    assert argv[argv.index("--dialect") + 1] == "tasmota"


M = 1_000_000


def _result(dialect: str, n: int, rate: float, cpu: float, **extras: object) -> RoundResult:
    r = RoundResult(dialect, n, expected=M, stored=M)
    r.readings_per_s, r.seconds = rate, M / rate
    r.peer_cpu_s, r.influxd_cpu_s = cpu, 8.0
    r.extras.update({"readings_per_message": 10, "messages": 100_000, **extras})
    return r


def _report(results: list[RoundResult]) -> AdaptersReport:
    bench = BenchReport(
        started_at="2026-12-01T10:00:00Z",
        command="sensorgate bench-adapters",
        scenario="adapters",
        workload={**Workload(readings_per_message=10).as_dict(), "rules": "default"},
        rounds=2,
        peers=["native", "tasmota"],
        machine={"cpus": 2},
        results=results,
    )
    return AdaptersReport(bench, summarize_dialects(results, {"native": "baseline"}))


def _results() -> list[RoundResult]:
    return [
        _result("native", 1, 50_000, 10.0),
        _result("tasmota", 1, 30_000, 20.0),
        _result("native", 2, 60_000, 12.5),
        _result("tasmota", 2, 40_000, 25.0),
    ]


def test_per_core_is_readings_per_gateway_cpu_second_and_compared_to_native() -> None:
    assert per_core(_results()[0]) == pytest.approx(100_000)
    native, tasmota = summarize_dialects(_results(), {})
    assert native.per_core == pytest.approx((90_000, 80_000, 100_000))
    assert tasmota.per_core == pytest.approx((45_000, 40_000, 50_000))
    assert tasmota.per_core_to_native == pytest.approx(0.5)
    assert tasmota.rate == (35_000, 30_000, 40_000)
    assert tasmota.gateway_cpu_s_per_m == pytest.approx((22.5, 20.0, 25.0))
    assert (tasmota.expected, tasmota.stored, tasmota.lost) == (2 * M, 2 * M, 0)


def test_the_table_json_and_chart_show_every_dialect(tmp_path: Path) -> None:
    report = _report(_results())
    console = Console(record=True, width=220)
    console.print(build_table(report))
    text = console.export_text()
    assert "90,000 (80,000-100,000)" in text
    assert "0.50x" in text
    doc = report.as_dict()
    assert [d["dialect"] for d in doc["dialects"]] == ["native", "tasmota"]
    assert doc["dialects"][1]["per_core_to_native"] == pytest.approx(0.5)
    assert "summaries" not in doc
    json.dumps(doc)
    png = tmp_path / "chart.png"
    chart(report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert exit_code(report) == 0


def test_losses_failures_and_dead_letters_fail_the_run() -> None:
    lossy = _results()
    lossy[1].stored = M - 3
    assert problems(_report(lossy)) == ["tasmota round 1: stored 999,997 of 1,000,000 readings"]
    assert exit_code(_report(lossy)) == 1
    letters = _results()
    letters[3].extras["deadletters"] = 2.0
    assert exit_code(_report(letters)) == 1
    failed = _results()
    failed[0].error = "the gateway exited"
    assert exit_code(_report(failed)) == 1


def test_the_command_has_help_defaults_and_refuses_unknown_dialects() -> None:
    args = build_parser().parse_args(["bench-adapters"])
    assert (args.readings_per_message, args.total, args.rounds) == (10, 1_000_000, 3)
    assert args.dialects.split(",") == list(BENCH_DIALECTS)
    assert args.out == "reports/bench-adapters.json"
    bad = build_parser().parse_args(["bench-adapters", "--dialects", "native,modbus"])
    assert run_command(bad) == 2
