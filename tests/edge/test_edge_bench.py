"""The bench's parts that can be checked quickly (the whole run takes ~90 s: not a test)."""

from __future__ import annotations

import argparse
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edge import bench


def test_sensorgate_edge_bench_is_registered() -> None:
    from edge.cli import register

    parser = argparse.ArgumentParser(prog="sensorgate")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["edge", "bench", "--json", "--out", "x.json", "--port", "1883"])
    assert (args.json, args.out, args.port, args.func) == (
        True,
        Path("x.json"),
        1883,
        bench.cmd_bench,
    )
    assert args.footprint_s == 30
    assert args.backlog_minutes == 10
    assert args.backlog_rate == 100


def test_process_meter_reads_proc_like_psutil() -> None:
    pytest.importorskip("psutil")
    meter = bench.ProcessMeter(os.getpid())
    assert meter.source == "psutil"
    proc = bench.ProcessMeter(os.getpid())
    proc._ps = None  # the /proc fallback
    assert abs(proc.rss_bytes() - meter.rss_bytes()) < 8 * 2**20
    assert abs(proc.cpu_seconds() - meter.cpu_seconds()) < 0.5


def test_prefill_stores_the_outage_through_the_agents_own_code(tmp_path: Path) -> None:
    path = tmp_path / "backlog.db"
    config = bench.agent_config("dev", 1, path, sensors=10, interval_s=0.1)
    events, readings = bench.prefill(config, minutes=0.5)  # 30 s x 100 readings/s
    assert readings == 3000
    assert events == 60  # 50 readings per event (the default batch)
    db = sqlite3.connect(path)
    seqs = [r[0] for r in db.execute("SELECT sequence FROM outbox ORDER BY id")]
    db.close()
    assert seqs == list(range(60))


def test_the_summary_table_marks_pass_and_fail() -> None:
    drain = {
        "drain_readings_per_s": 2400,
        "drain_events_per_s": 48.0,
        "backlog_readings": 60000,
        "drain_s": 25.0,
    }
    doc = {
        "targets": [
            {"what": "RSS", "value": 41.0, "unit": "MB", "target": "< 40", "pass": False},
            {"what": "max", "value": 25000, "unit": "r/s", "target": ">= 20,000", "pass": True},
        ],
        "backlog": {"default_max_rate": drain, "unlimited": drain},
        "footprint": {"measured_s": 30, "warmup_s": 5, "rss_mb_mean": 41, "meter": "psutil"},
        "unconstrained": {
            "readings_per_s_sampled": 25000,
            "events_per_s_acked": 500,
            "readings_per_event": 50,
            "outbox_depth_growth_events": 0,
            "cpu_percent_of_one_core": 50,
            "rss_mb": 41,
        },
        "pass": False,
    }
    text = bench.table(doc)
    assert "41 MB" in text
    assert "FAIL" in text.splitlines()[1]
    assert "PASS" in text.splitlines()[2]
    assert "25,000 r/s" in text
    assert text.endswith("overall: FAIL")


@pytest.mark.parametrize("sensors", [1, 50, 1000, 5000])
def test_the_unconstrained_phase_asks_for_a_config_the_agent_accepts(
    tmp_path: Path, sensors: int
) -> None:
    # The phase once asked for 0.5 ms intervals and 0.5 s heartbeats, which the agent's
    # config refuses (it exited with code 2 and the bench crashed).
    from edge.bench.phases import OFFERED, unconstrained_config
    from edge.config import AgentConfig

    broker = argparse.Namespace(host="127.0.0.1", port=1883)
    doc = unconstrained_config(broker, tmp_path, sensors=sensors)  # type: ignore[arg-type]
    config = AgentConfig.model_validate(doc)
    assert len(config.sensors) == sensors
    offered = sum(1 / s.interval_s for s in config.sensors)
    assert offered >= min(OFFERED, sensors * 100) * 0.999


def test_the_status_watch_keeps_the_latest_details(services: Any, unique: str) -> None:
    from edge.bench import StatusWatch
    from edge.mqtt import MqttLink, MqttSettings
    from tests.waiting import wait_for

    topic = f"sgtest/{unique}/status"
    watch = StatusWatch(services.mqtt_host, services.mqtt_port, topic)
    try:
        wait_for(watch.subscribed.is_set, 10, "the watch's SUBACK")
        with MqttLink(MqttSettings(host=services.mqtt_host, port=services.mqtt_port)) as pub:
            for doc in (b'{"data": {"details": {"n": 1}}}', b"not json", b'{"data": {}}'):
                assert pub.publish(topic, doc).wait(10)
            assert pub.publish(topic, b'{"data": {"details": {"n": 2}}}').wait(10)
        wait_for(lambda: watch.snapshot()[0] >= 2, 10, "two statuses with details")
        assert watch.snapshot() == (2, {"n": 2})  # the ones without details are skipped
    finally:
        watch.close()
