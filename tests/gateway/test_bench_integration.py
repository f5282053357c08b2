"""``sensorgate bench`` end to end on a tiny burst: the naive peer and influxd's ceiling.

Real mosquitto and influxd (started by the benchmark itself, fresh per round). Checks
what was stored, never how fast: a figure of time or CPU is a benchmark's output, not a
test's assertion.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main

pytestmark = pytest.mark.integration


def test_naive_peer_and_ceiling_store_every_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    code = main(
        [
            "bench",
            "--peers",
            "naive,influxd",
            "--rounds",
            "1",
            "--devices",
            "20",
            "--readings-per-message",
            "20",
            "--sensors-per-device",
            "20",
            "--total",
            "2000",
            "--idle",
            "0",
            "--out",
            str(out),
            "--chart",
            str(png),
            "--json",
        ]
    )
    printed = json.loads(capsys.readouterr().out)
    report = json.loads(out.read_text())
    assert printed == report
    assert code == 0, report
    assert report["workload"]["messages"] == 100
    results = {r["peer"]: r for r in report["results"]}
    assert set(results) == {"naive", "influxd"}
    for result in results.values():
        assert result["error"] is None
        assert result["stored"] == result["expected"] == 2_000
    naive = results["naive"]
    assert naive["outcome"] == "settled"
    assert naive["points_written"] == 2_000
    assert naive["write_requests"] == 100  # one HTTP write per message
    assert results["influxd"]["write_requests"] == 1  # 2,000 points fit one 5,000-point batch
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bench_stop_stores_every_reading_across_the_stop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench-stop.json"
    main(
        [
            "bench-stop",
            "--modes",
            "sigint-ignored,sigkill",
            "--rounds",
            "1",
            "--devices",
            "20",
            "--readings-per-message",
            "20",
            "--sensors-per-device",
            "20",
            "--total",
            "4000",
            "--storage-only",
            "--out",
            str(out),
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(out.read_text())
    trials = {t["mode"]: t for t in report["trials"]}
    assert set(trials) == {"sigint-ignored", "sigkill"}
    for trial in trials.values():
        assert trial["error"] is None, trial
        # Whatever the first gateway stored before it went, the second stored the rest.
        assert trial["stored"] == trial["expected"] == 4_000
        assert trial["redelivered"] is not None
        assert trial["bound"]["bound"] > 0
    # SIGINT reached a gateway that started with it ignored, and it stopped cleanly.
    assert trials["sigint-ignored"]["exit_code"] == 0
    assert trials["sigkill"]["exit_code"] == -9
    assert [s["mode"] for s in report["summaries"]] == ["sigint-ignored", "sigkill"]


def test_bench_adapters_stores_every_reading_each_dialect_carries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, png = tmp_path / "adapters.json", tmp_path / "adapters.png"
    code = main(
        [
            "bench-adapters",
            "--rounds",
            "1",
            "--devices",
            "10",
            "--total",
            "1000",
            "--settle",
            "2",
            "--out",
            str(out),
            "--chart",
            str(png),
            "--json",
        ]
    )
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    assert code == 0, [r["error"] for r in report["results"]]
    # Shelly Gen2 has five numeric components to fill; Gen1 sends one value per message
    carried = {"shelly": 5, "shelly1": 1}
    results = {r["peer"]: r for r in report["results"]}
    assert list(results) == [
        "native",
        "zigbee2mqtt",
        "tasmota",
        "shelly",
        "shelly1",
        "homeassistant",
        "sparkplug",
        "telegraf",
    ]
    for dialect, result in results.items():
        assert result["error"] is None, dialect
        assert result["stored"] == result["expected"] == 1_000, dialect
        assert result["extras"]["readings_per_message"] == carried.get(dialect, 10)
        assert result["extras"]["deadletters"] == 0, dialect
    assert [d["dialect"] for d in report["dialects"]] == list(results)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bench_cluster_stores_every_reading_through_two_processes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cluster.json"
    code = main(
        ["bench-cluster", "--processes", "2", "--rounds", "1", "--devices", "20",
         "--readings-per-message", "20", "--total", "2000", "--idle", "0.5",
         "--settle", "2", "--out", str(out), "--json"]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(out.read_text())
    assert code == 0, report
    (result,) = report["results"]
    assert result["error"] is None
    assert result["stored"] == result["expected"] == 2_000
    per = result["per_process"]
    assert [p["index"] for p in per] == [0, 1]
    # The shared subscription gave each process messages; together they took them all,
    # and decoded every reading once.
    assert all(p["received_messages"] > 0 for p in per)
    assert sum(p["received_messages"] for p in per) == 100
    assert sum(p["decoded_readings"] for p in per) == 2_000
    assert report["summaries"][0]["lost"] == 0
