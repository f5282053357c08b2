"""``sensorgate up``: runs, stores readings, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

RUN_FOR_S = 30


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.split(")")[-1].split()[0] != "Z"


def test_up_stores_readings_and_ctrl_c_stops_everything() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORGATE_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "up",
            "--json",
            "--dashboard-port",
            "0",
            "--interval",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[dict[str, Any]] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(json.loads(line))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        ready = lines.get(timeout=60)
        assert ready["event"] == "ready", ready
        assert ready["mqtt_url"].startswith("mqtt://127.0.0.1:")
        assert ready["influx_url"].startswith("http://127.0.0.1:")
        pids = ready["pids"]
        assert set(pids) == {"gateway", "mosquitto", "influxd"}
        assert all(_alive(pid) for pid in pids.values())

        stored: list[int] = []
        started = time.monotonic()
        while time.monotonic() - started < RUN_FOR_S:
            doc = lines.get(timeout=10)
            assert doc["event"] == "counts"
            if doc["stored"] is not None:
                stored.append(doc["stored"])
        assert stored, "InfluxDB never answered a count"
        assert stored[-1] > 0
        # Still growing in the second half of the run, not just at the start.
        half = len(stored) // 2
        assert stored[-1] > stored[half] > stored[0] >= 0, stored

        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
        reader.join(5)
        summary = None
        while not lines.empty():
            summary = lines.get()
        assert summary is not None
        assert summary["event"] == "summary"
        assert summary["stored"] >= stored[-1]
        wait_for(
            lambda: not any(_alive(pid) for pid in pids.values()),
            15,
            "every child of `sensorgate up` to exit",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
