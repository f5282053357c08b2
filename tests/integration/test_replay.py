"""``sensorgate replay`` over readings stored in a real influxd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contract import Reading, TelemetryEvent
from gateway.app import prepare_storage
from gateway.influx.layout import StorageLayout
from gateway.influx.lineprotocol import reading_lines
from gateway.influx.query import InfluxQL
from gateway.influx.writer import make_writer
from gateway.localstack.services import ServiceEndpoints
from gateway.ops.replay import run_replay
from gateway.settings import GatewaySettings, load_settings, settings_env

pytestmark = pytest.mark.integration

RULES = """
[[rules]]
id = "hot"
kind = "threshold"
metric = "t"
above = 30
clear = 28
"""


@pytest.fixture
def stored(services: ServiceEndpoints, unique: str) -> tuple[GatewaySettings, datetime]:
    """Two devices, 120 s at 1 Hz; device a is hot from 40 s to 60 s."""
    settings = load_settings(
        topic_prefix=f"sgtest/{unique}",
        influx={"url": services.influx_url, "database": f"t_{unique}"},
    )
    start = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    prepare_storage(settings)  # the database and its retention policies
    writer = make_writer(
        settings.influx, policy=StorageLayout.of(settings.influx).policy("readings")
    )
    lines: list[str] = []
    for device in ("a", "b"):
        for i in range(120):
            value = 35.0 if device == "a" and 40 <= i < 60 else 20.0 + (i % 3) * 0.1
            event = TelemetryEvent.create(
                site="s",
                device=device,
                sequence=i,
                readings=[
                    Reading(sensor="x", metric="t", value=value, time=start + timedelta(seconds=i))
                ],
            )
            lines += reading_lines(event)
    writer.write(lines)
    writer.close()
    return settings, start


def test_replay_writes_replay_measurements_and_reports_per_rule(
    stored: tuple[GatewaySettings, datetime], tmp_path: Path
) -> None:
    settings, start = stored
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    report = run_replay(settings, since=start, until=start + timedelta(minutes=3), rules_path=rules)
    assert report.devices == 2
    assert report.events == 240
    assert report.by_rule == {"hot": {"raised": 1, "cleared": 1}}
    assert report.by_device == {"s/a": 1}
    q = InfluxQL(settings.influx)
    rows = q.query(f"SELECT alarm_id, value FROM {q.layout.replay_alarms} GROUP BY state, device")
    assert sorted((r["state"], r["device"]) for r in rows) == [("active", "a"), ("cleared", "a")]
    raised = next(r for r in rows if r["state"] == "active")
    assert raised["time"] == int((start + timedelta(seconds=40)).timestamp()) * 10**9
    assert q.scalar(f"SELECT count(mean) FROM {q.layout.replay_aggregates}") > 0
    assert q.query(f"SELECT * FROM {q.layout.alarms}") == []  # live measurements untouched
    q.close()


def test_replay_cli_to_another_database_as_json(
    stored: tuple[GatewaySettings, datetime], tmp_path: Path
) -> None:
    settings, start = stored
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    out_db = settings.influx.database + "_replay"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "replay",
            "--since",
            start.isoformat(),
            "--until",
            "now",
            "--rules",
            str(rules),
            "--database-out",
            out_db,
            "--json",
        ],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["by_rule"] == {"hot": {"raised": 1, "cleared": 1}}
    # A database of its own keeps the results in its default policy.
    q = InfluxQL(settings.influx.model_copy(update={"database": out_db}))
    assert q.scalar(f"SELECT count(alarm_id) FROM {StorageLayout.single().alarms}") == 2
    q.close()
