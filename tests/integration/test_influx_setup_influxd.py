"""``sensorgate influx setup`` and the v2 pipelined path against real servers.

influxd 1.x (the session's) for the v1 branch of the command; VictoriaMetrics for the
gateway's pipelined writer on the v2 API (the only real v2 write endpoint installable
here; no InfluxDB 2.x/3.x server is: docs/influxdb.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from dataflows.columns import PointColumns, ReadingColumns, SeriesNames
from gateway.influx.encoder import LineProtocolEncoder
from gateway.influx.pipeline import make_pipelined_writer
from gateway.influx.query import InfluxQL
from gateway.localstack.services import ServiceEndpoints, start_victoria_metrics
from gateway.settings import InfluxSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _setup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "influx", "setup", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_setup_creates_the_v1_database_once(services: ServiceEndpoints, unique: str) -> None:
    env = {"SENSORGATE_INFLUX__URL": services.influx_url, "SENSORGATE_INFLUX__DATABASE": unique}

    check = _setup(env, "--check", "--json")
    assert check.returncode == 1, check.stderr
    report = json.loads(check.stdout)
    assert report["server"].startswith("1.")
    assert [(s["name"], s["status"]) for s in report["steps"]] == [
        ("ping", "ok"),
        ("database", "missing"),
    ]

    made = _setup(env)
    assert made.returncode == 0, made.stdout + made.stderr
    assert re.search(r"^  database +created", made.stdout, re.M), made.stdout
    assert re.search(r"^  retention raw +created +30d \(default\)$", made.stdout, re.M)
    assert made.stdout.rstrip().endswith("ready")

    again = json.loads(_setup(env, "--json").stdout)
    assert again["ok"] is True
    assert [(s["name"], s["status"]) for s in again["steps"]] == [
        ("ping", "ok"),
        ("database", "ok"),
        ("retention raw", "ok"),
        ("retention aggregates", "ok"),
        ("retention deadletters", "ok"),
        ("influxql", "ok"),
    ]
    query = InfluxQL(InfluxSettings(url=services.influx_url, database=unique))
    try:
        assert {"name": unique} in query.query("SHOW DATABASES")
    finally:
        query.close()


def test_setup_reports_an_unreachable_server(unique: str) -> None:
    from gateway.localstack.services import free_port

    env = {"SENSORGATE_INFLUX__URL": f"http://127.0.0.1:{free_port()}"}
    result = _setup(env, "--json")
    assert result.returncode == 1
    (step,) = json.loads(result.stdout)["steps"]
    assert (step["name"], step["status"]) == ("ping", "failed")


def test_setup_with_a_config_file(services: ServiceEndpoints, unique: str, tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[influx]\nurl = "{services.influx_url}"\ndatabase = "cfg_{unique}"\n')
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--config", str(config), "influx", "setup"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"database 'cfg_{unique}' created" in result.stdout


@pytest.fixture(scope="module")
def vm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, port = start_victoria_metrics(Path(tmp_path_factory.mktemp("vm")))
    yield f"http://127.0.0.1:{port}"
    proc.stop()


def test_pipelined_writer_on_the_v2_api(vm_url: str, tmp_path: Path) -> None:
    """The gateway's own points path (encoder bodies in µs, pipelined, spill on) on v2."""
    names = SeriesNames()
    for device in ("pump,1", "valve 2"):
        names.add("plant v2", device, "env", "temp")
    t0_us = 1_793_534_400_000_000  # 2026-11-01 12:00 UTC
    n = 500
    readings = ReadingColumns(
        series=np.arange(n, dtype=np.int32) % 2,
        t_us=t0_us + np.arange(n, dtype=np.int64) * 1_000,
        value=np.arange(n, dtype=np.float64) / 4,
        seq=np.arange(n, dtype=np.int64),
    )
    encoded = LineProtocolEncoder().encode_points(PointColumns(names, readings=readings))
    settings = InfluxSettings(
        url=vm_url,
        api="v2",
        token="t0ken",
        org="acme",
        bucket="sensors",
        batch_size=100,
        spill_dir=tmp_path / "spill",
    )
    writer = make_pipelined_writer(settings)
    try:
        seq = writer.submit(encoded.body, encoded.lines)
        writer.flush(timeout=60)
        assert writer.durable_through >= seq
        assert writer.stats.spilled_points == 0
    finally:
        writer.close()

    httpx.get(f"{vm_url}/internal/force_flush")
    resp = httpx.get(
        f"{vm_url}/api/v1/export",
        params={
            "match[]": '{__name__="readings_value",site="plant v2"}',
            "start": "2026-10-01T00:00:00Z",
        },
    )
    series = {s["metric"]["device"]: s for s in (json.loads(x) for x in resp.text.splitlines())}
    assert set(series) == {"pump,1", "valve 2"}
    assert sum(len(s["values"]) for s in series.values()) == n
    assert series["pump,1"]["values"][:3] == [0.0, 0.5, 1.0]
    assert series["pump,1"]["timestamps"][:2] == [t0_us // 1000, t0_us // 1000 + 2]
