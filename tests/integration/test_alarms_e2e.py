"""Alarms through the real gateway: a simulated fleet with every anomaly kind injected.

The simulator runs in real time (deadman silence is measured on the gateway's arrival
clock, so an accelerated or ``max`` run would hide a dropout). The rules file targets
the kinds explicitly (see docs/alarms.md for what the adaptive defaults catch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from contract.alarms import AlarmEvent
from gateway.localstack.services import ServiceEndpoints
from gateway.settings import GatewaySettings
from simulators.labels import Label
from tests.integration.alarm_helpers import AlarmCollector
from tests.integration.gateway_kit import gateway_thread
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

RULES = """
version = 1

[defaults]
deadman = "4s"              # devices report every 0.5 s; margin for a loaded machine

[[rules]]
id = "temp-high"            # spike, level shift, drift (explicit magnitudes)
kind = "threshold"
metric = "temperature"
above = 27
clear = 25

[[rules]]
id = "humidity-range"       # out of range
kind = "range"
metric = "humidity"
low = 0
high = 100

[[rules]]
id = "pressure-stuck"       # stuck sensor
kind = "flatline"
metric = "pressure"
duration = "3s"

[[rules]]
id = "pressure-noisy"       # noise burst: the 5 s window's spread
kind = "aggregate"
metric = "pressure"
window = "5s"
field = "stddev"
above = 1.0
clear = 0.5
"""

# (device, kind, metric, at_s, duration_s, magnitude) -> the rule that must catch it.
ANOMALIES = [
    ("dev-0", "spike", "temperature", 6, None, 10.0, "temp-high"),
    ("dev-1", "out_of_range", "humidity", 6, 5, 10.0, "humidity-range"),
    ("dev-2", "stuck", "pressure", 5, 8, None, "pressure-stuck"),
    ("dev-3", "dropout", "*", 6, 9, None, "deadman"),
    ("dev-4", "level_shift", "temperature", 6, 6, 10.0, "temp-high"),
    ("dev-5", "drift", "temperature", 5, 8, 20.0, "temp-high"),
    ("dev-6", "noise_burst", "pressure", 4, 5, 6.0, "pressure-noisy"),
]
CLEAN = ["dev-7", "dev-8", "dev-9"]
DURATION_S = 24
INTERVAL_S = 0.5


def _scenario() -> str:
    lines = [
        'name = "alarms-e2e"',
        "seed = 11",
        f"interval_s = {INTERVAL_S}",
        'speed = "realtime"',
        "stagger = true",
        "[device_types.box]",
        'sensor = "probe"',
        # No daily cycle, drift or per-device offset: the thresholds stay far from noise.
        "metrics.temperature = { mean = 21, mean_spread = 0.5, daily_amplitude = 0,"
        " drift_per_day = 0 }",
        "metrics.humidity = {}",
        "metrics.pressure = {}",
        "[[sites]]",
        'id = "plant"',
        'devices = [{ type = "box", count = 10, name = "dev-{n}" }]',
    ]
    for device, kind, metric, at_s, duration_s, magnitude, _rule in ANOMALIES:
        lines += [
            "[[anomalies]]",
            f'kind = "{kind}"',
            f'device = "{device}"',
            f'metric = "{metric}"',
            f"at_s = {at_s}",
        ]
        if duration_s is not None:
            lines.append(f"duration_s = {duration_s}")
        if magnitude is not None:
            lines.append(f"magnitude = {magnitude}")
    return "\n".join(lines) + "\n"


def _run_fleet(services: ServiceEndpoints, prefix: str, tmp: Path) -> list[Label]:
    scenario = tmp / "fleet.toml"
    scenario.write_text(_scenario())
    labels = tmp / "labels.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "simulators.cli",
        "simulate",
        "--scenario",
        str(scenario),
        "--host",
        services.mqtt_host,
        "--port",
        str(services.mqtt_port),
        "--prefix",
        prefix,
        "--duration",
        str(DURATION_S),
        "--labels",
        str(labels),
        "--json",
    ]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=DURATION_S + 60, env=os.environ
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [Label.from_json(json.loads(line)) for line in labels.read_text().splitlines()]


def test_every_injected_anomaly_raises_one_alarm_of_its_rule_and_clears(
    gateway_settings: GatewaySettings, services: ServiceEndpoints, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(textwrap.dedent(RULES))
    settings = gateway_settings.model_copy(
        update={
            "rules_file": rules,
            "stream": gateway_settings.stream.model_copy(update={"windows": ("5s",)}),
        }
    )
    prefix = settings.topic_prefix
    with (
        AlarmCollector(services, prefix, f"c-{settings.gateway_id}") as alarms,
        gateway_thread(settings),
    ):
        labels = _run_fleet(services, prefix, tmp_path)
        ended = max(label.end for label in labels)
        expected = {lab.device for lab in labels}
        # Every anomaly has ended well before the run did; wait for all the clears.
        wait_for(
            lambda: {e.data.device for e in alarms.of("cleared")} >= expected,
            20,
            "a clear for every anomalous device",
        )
        stopped_at = time.time()
    by_device = {lab.device: lab for lab in labels}
    assert len(by_device) == len(ANOMALIES), labels
    # The fleet's end silences every device: deadman raises after it are not part of the run.
    run_end = ended + timedelta(seconds=DURATION_S)  # upper bound, refined below
    events = alarms.snapshot()
    last_reading = _fleet_end(labels, run_end)
    during = [e for e in events if e.data.event_time < last_reading]
    for device, kind, _metric, _at, _dur, _mag, rule in ANOMALIES:
        label = by_device[device]
        assert label.kind == kind
        raised = [e for e in during if e.data.device == device and _is(e, "raised")]
        assert [e.data.rule for e in raised] == [rule], (kind, _summary(during, device))
        alarm = raised[0].data
        grace = timedelta(seconds=1.5)
        assert label.start - grace <= alarm.event_time <= label.end + grace, (kind, alarm)
        cleared = [e for e in during if _is(e, "cleared") and e.data.alarm_id == alarm.alarm_id]
        assert len(cleared) == 1, (kind, _summary(during, device))
        assert cleared[0].data.event_time >= label.end - grace, (kind, cleared[0].data)
    for device in CLEAN:
        assert not [e for e in during if e.data.device == device], _summary(during, device)
    # The retained summaries say nothing is active on the anomalous devices any more.
    assert stopped_at > 0
    for device in expected:
        topic = f"{prefix}/plant/{device}/alarms/active"
        assert alarms.active[topic]["alarms"] == [], alarms.active[topic]


def _fleet_end(labels: list[Label], bound: datetime) -> datetime:
    # The simulator starts at the first label's start minus its offset; labels carry
    # event times, so the last reading is at start + DURATION_S.
    first = min(labels, key=lambda lab: lab.start)
    offset = next(a[3] for a in ANOMALIES if a[0] == first.device)
    end = first.start - timedelta(seconds=offset) + timedelta(seconds=DURATION_S)
    return min(end, bound)


def _is(event: AlarmEvent, transition: str) -> bool:
    return event.type.split(".")[-2] == transition


def _summary(events: list[AlarmEvent], device: str) -> list[tuple[str, str, str]]:
    return [
        (e.type.split(".")[-2], e.data.rule, e.data.event_time.isoformat())
        for e in events
        if e.data.device == device
    ]
