"""``sensorgate up`` serves the dashboard and prints its URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration


def test_up_serves_the_dashboard() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORGATE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "up", "--json", "--duration", "120"],
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
        page = httpx.get(url)
        assert page.status_code == 200
        assert "SensorGate" in page.text

        def five_devices() -> bool:
            return len(httpx.get(base + "api/fleet").json()["devices"]) == 5

        wait_for(five_devices, 90, "the demo fleet on the dashboard")
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
        if proc.stdout is not None:
            proc.stdout.close()
