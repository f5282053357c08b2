"""``sensorgate up`` (its gateway process) serves the dashboard; ``sensorgate dashboard``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from gateway.localstack.services import ServiceEndpoints
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def test_up_serves_the_dashboard() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORGATE_")}
    # The gateway's metrics port is fixed (9464): off here, so that another `up` on the
    # same machine does not make this one fail.
    env["SENSORGATE_METRICS_PORT"] = "0"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "up",
            "--json",
            "--dashboard-port",
            "0",
            "--duration",
            "120",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "ready"
        url = ready["dashboard_url"]
        assert url.startswith("http://127.0.0.1:")
        assert "?token=" in url
        base = url.split("?")[0]
        auth = {"Authorization": "Bearer " + url.split("?token=")[1]}

        def served() -> bool:  # the gateway process serves it once it has started
            try:
                return httpx.get(base + "healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(served, 60, "the dashboard in the gateway process")
        page = httpx.get(url)
        assert page.status_code == 200
        assert "SensorGate" in page.text

        def five_devices() -> bool:
            return len(httpx.get(base + "api/fleet", headers=auth).json()["devices"]) == 5

        wait_for(five_devices, 90, "the demo fleet on the dashboard")
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
        if proc.stdout is not None:
            proc.stdout.close()


def test_dashboard_command_runs_standalone(services: ServiceEndpoints, unique: str) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SENSORGATE_")},
        "SENSORGATE_INFLUX__URL": services.influx_url,
        "SENSORGATE_INFLUX__DATABASE": f"d_{unique}",
        "SENSORGATE_MQTT__HOST": services.mqtt_host,
        "SENSORGATE_MQTT__PORT": str(services.mqtt_port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "dashboard", "--port", "0", "--read-only",
         "--public-read", "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("SensorGate dashboard: http://127.0.0.1:"), first
        url = first.split(": ", 1)[1].strip()
        assert "token" not in url  # read-only: nothing to acknowledge with
        assert httpx.get(url + "api/config").json()["read_only"] is True
        assert httpx.get(url + "api/fleet").json()["devices"] == []
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
        if proc.stdout is not None:
            proc.stdout.close()
