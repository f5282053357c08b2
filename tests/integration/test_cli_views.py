"""``sensorgate alerts|devices|query`` against the real influxd, as a script runs them."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.localstack.services import ServiceEndpoints
from gateway.settings import InfluxSettings
from tests.integration.views_kit import aggregate_line, alarm_line, reading_line, write

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def sg(influx: InfluxSettings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SENSORGATE_INFLUX__URL": influx.url,
        "SENSORGATE_INFLUX__DATABASE": influx.database,
        # The windows this module's data was written with (the default is 1m only).
        "SENSORGATE_STREAM__WINDOWS": '["10s", "1m"]',
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def influx(services: ServiceEndpoints, unique: str) -> InfluxSettings:
    settings = InfluxSettings(url=services.influx_url, database=f"c_{unique}")
    now = datetime.now(UTC).replace(microsecond=0)
    lines = []
    for k in range(30):
        when = now - timedelta(seconds=10 * k + 5)
        lines.append(reading_line("plant", "pump-1", "flow", "rate", 10.0 + k, when))
        lines.append(aggregate_line("plant", "pump-1", "flow", "rate", "10s", 10.0 + k, when))
    lines.append(reading_line("plant", "pump-2", "flow", "rate", 1.0, now - timedelta(minutes=20)))
    key = dict(site="plant", device="pump-1", metric="rate", rule="high")
    lines += [
        alarm_line(
            **key,
            severity="critical",
            state="active",
            alarm_id="c1",
            when=now - timedelta(minutes=3),
        ),
        alarm_line(
            site="plant",
            device="pump-2",
            metric="*",
            rule="deadman",
            severity="warning",
            state="active",
            alarm_id="w1",
            when=now - timedelta(minutes=2),
        ),
        alarm_line(
            site="plant",
            device="pump-2",
            metric="rate",
            rule="low",
            severity="major",
            state="active",
            alarm_id="m1",
            when=now - timedelta(minutes=9),
        ),
        alarm_line(
            site="plant",
            device="pump-2",
            metric="rate",
            rule="low",
            severity="major",
            state="cleared",
            alarm_id="m1",
            when=now - timedelta(minutes=8),
        ),
    ]
    write(settings, lines)
    return settings


def test_alerts_active_json_and_fail_on(influx: InfluxSettings) -> None:
    done = sg(influx, "alerts", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["alarm_id"], r["severity"], r["state"]) for r in rows] == [
        ("c1", "critical", "active"),
        ("w1", "warning", "active"),
    ]
    assert rows[0]["time"].endswith("Z")
    assert sg(influx, "alerts", "--fail-on", "critical").returncode == 1
    assert sg(influx, "alerts", "--fail-on", "major", "--device", "pump-2").returncode == 0
    table = sg(influx, "alerts")
    assert table.returncode == 0
    assert "pump-1" in table.stdout
    assert " UTC" in table.stdout


def test_alerts_history_filters(influx: InfluxSettings) -> None:
    done = sg(influx, "alerts", "--history", "--device", "pump-2", "--rule", "low", "--json")
    assert done.returncode == 0, done.stderr
    assert [r["state"] for r in json.loads(done.stdout)] == ["cleared", "active"]
    for since in (("--since", "150s"), ("--since=-150s",)):
        done = sg(influx, "alerts", "--history", *since, "--json")
        assert [r["alarm_id"] for r in json.loads(done.stdout)] == ["w1"], done.stderr
    done = sg(influx, "alerts", "--history", "--state", "cleared", "--json")
    assert [r["alarm_id"] for r in json.loads(done.stdout)] == ["m1"]


def test_devices(influx: InfluxSettings) -> None:
    done = sg(influx, "devices", "--json")
    assert done.returncode == 0, done.stderr
    fleet = {d["device"]: d for d in json.loads(done.stdout)}
    assert fleet["pump-1"]["online"] is True
    assert fleet["pump-2"]["online"] is False
    assert fleet["pump-1"]["values"] == {"flow/rate": 10.0}
    table = sg(influx, "devices")
    assert "online" in table.stdout
    assert "offline" in table.stdout
    assert "1 online" in table.stdout


def test_query_formats(influx: InfluxSettings) -> None:
    done = sg(
        influx,
        "query",
        "--site",
        "plant",
        "--device",
        "pump-1",
        "--since",
        "10m",
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["interval"] == "10s"
    assert len(doc["points"]) == 30
    assert {p["series"] for p in doc["points"]} == {"flow/rate"}
    done = sg(
        influx,
        "query",
        "--site",
        "plant",
        "--device",
        "pump-1",
        "--since",
        "10m",
        "--interval",
        "1m",
        "--format",
        "csv",
        "--source",
        "aggregates",
    )
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert 5 <= len(rows) <= 7
    assert rows[0].keys() == {"time", "series", "mean", "min", "max"}
    table = sg(influx, "query", "--site", "plant", "--device", "pump-1")
    assert table.returncode == 0
    assert "interval 10s" in table.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("alerts", "--device", "bad\nname"),
        ("alerts", "--history", "--since", "yesterday"),
        ("query", "--site", "plant", "--device", "x", "--interval", "1h; DROP"),
        ("query", "--site", "plant", "--device", "x", "--since", "now", "--until", "1h"),
        ("devices", "--lookback", "forever"),
    ],
)
def test_bad_input_exits_2(influx: InfluxSettings, args: tuple[str, ...]) -> None:
    done = sg(influx, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "sensorgate:" in done.stderr


def test_unreachable_influx_exits_3() -> None:
    dead = InfluxSettings(url="http://127.0.0.1:9", database="x", timeout_s=2)
    for args in (("alerts",), ("devices",), ("query", "--site", "s", "--device", "d")):
        done = sg(dead, *args)
        assert done.returncode == 3, (args, done.stderr)
        assert "cannot reach InfluxDB" in done.stderr
