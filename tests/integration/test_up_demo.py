"""``sensorgate up`` shows an explained alarm on its own: the demo's anomaly, end to end.

The real stack as ``make up`` starts it (mosquitto, influxd, the gateway process with
its dashboard, the demo fleet). Nothing here injects anything: the demo scenario makes
demo-000's temperature jump 40 s after the fleet starts. The test waits, with a generous
bound, for that alarm on the dashboard (API and page, with the detector's band and the
expected band drawn) and in ``sensorgate alerts``; it asserts no timing figure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import wait_for
from tests.integration.test_dashboard import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WITHIN_S = 120  # the promise: the alarm is up within 2 minutes of `make up`


def _ours(alarms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        a
        for a in alarms
        if a["site"] == "demo" and a["device"] == "demo-000" and a["metric"] == "temperature"
    ]


def test_up_raises_the_demo_alarm_on_the_dashboard_and_in_alerts(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    shots = tmp_path
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORGATE_")}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "up", "--json", "--dashboard-port", "0",
         "--interval", "5", "--duration", "400"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "ready", ready
        assert ready["demo_anomaly"]["device"] == "demo-000"
        url = ready["dashboard_url"]
        base = url.split("?")[0]
        auth = {"Authorization": "Bearer " + url.split("?token=")[1]}
        found: list[dict[str, Any]] = []

        def on_dashboard() -> bool:
            try:
                got = httpx.get(base + "api/alarms", headers=auth, timeout=5).json()
                found[:] = _ours(got)
            except (httpx.TransportError, ValueError):
                return False
            return bool(found)

        wait_for(on_dashboard, WITHIN_S - (time.monotonic() - started), "the demo alarm")
        alarm = found[0]
        assert alarm["rule"] == "anomaly"
        detail = alarm["detail"]
        assert detail["component"]
        assert detail["band_low"] < detail["expected"] < detail["band_high"]
        assert not detail["band_low"] <= alarm["value"] <= detail["band_high"]
        assert detail["history_readings"] > 0
        assert "expected" in alarm["why"]

        cli_env = {**env, "COLUMNS": "240"}
        alerts_cmd = [sys.executable, "-m", "gateway.cli", "alerts", "--influx-url",
                      ready["influx_url"], "--database", ready["database"]]  # fmt: skip
        listed: list[dict[str, Any]] = []

        def in_alerts() -> bool:
            out = subprocess.run([*alerts_cmd, "--json"], capture_output=True, text=True,
                                 cwd=REPO, env=cli_env, check=True)  # fmt: skip
            listed[:] = _ours(json.loads(out.stdout))
            return bool(listed)

        wait_for(in_alerts, max(5.0, WITHIN_S - (time.monotonic() - started)), "alerts")
        assert listed[0]["alarm_id"] == alarm["alarm_id"]
        assert listed[0]["detail"]["expected"] == detail["expected"]
        table = subprocess.run(
            [*alerts_cmd, "--history", "--device", "demo-000"],
            capture_output=True, text=True, cwd=REPO, env=cli_env, check=True,
        ).stdout  # fmt: skip
        assert "demo-000" in table
        assert "prediction error" in table or "level shift" in table or "likelihood" in table

        # The device page: the detector's band at the alarm, and the expected band from
        # the stored aggregates once a few windows have closed.
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1360, "height": 1000})
                page.goto(url)
                page.goto(base + "#/device/demo/demo-000")
                page.locator('button[data-range="15m"]').click()
                chart = page.locator('[data-testid=chart][data-series="env/temperature"]')
                chart.locator("[data-testid=alarm-band]").first.wait_for(timeout=60_000)

                def band_drawn() -> bool:
                    d = chart.locator("[data-testid=expected-band]").get_attribute("d")
                    return bool(d)

                wait_for(band_drawn, 120, "the expected band on the device chart")
                assert page.get_by_test_id("alarm-why").count() >= 1
                page.screenshot(path=str(shots / "demo-alarm.png"))
            finally:
                browser.close()
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
        if proc.stdout is not None:
            proc.stdout.close()
