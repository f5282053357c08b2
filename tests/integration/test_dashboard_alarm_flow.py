"""The dashboard with the gateway's own alarm stage (runs once the alarm wiring is merged).

Unlike ``test_dashboard.py``, nothing here plays the gateway: a device reports an
anomaly, the gateway's rules raise the alarm, the acknowledge command goes to the
gateway over MQTT and the gateway acknowledges and later clears the alarm, writing
each event to InfluxDB. Skipped while ``gateway.connectors.alarm_sink`` (the alarm wiring) is not
in the tree.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contract import Reading, TelemetryEvent
from contract.codec import encode
from edge.mqtt import MqttLink, MqttSettings
from gateway.dashboard.server import Dashboard
from gateway.settings import GatewaySettings
from gateway.views import AlarmFilter, Views
from tests.integration.gateway_kit import gateway_thread
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

RULES = """
version = 1

[[rules]]
id = "temp-high"
kind = "threshold"
metric = "temperature"
above = 40
clear = 30
"""


def test_real_alarm_raised_acknowledged_and_cleared_on_the_page(
    gateway_settings: GatewaySettings, tmp_path: Path, browser_page: object
) -> None:
    from playwright.sync_api import Page, expect

    p: Page = browser_page  # type: ignore[assignment]
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    settings = gateway_settings.model_copy(update={"rules_file": rules})
    mqtt = MqttSettings(host=settings.mqtt.host, port=settings.mqtt.port)
    seq = iter(range(1, 10**6))
    temperature = [21.0]
    stop = threading.Event()

    def report(link: MqttLink) -> None:  # one reading every 0.2 s until stopped
        while not stop.wait(0.2):
            event = TelemetryEvent.create(
                site="lab", device="oven-1", sequence=next(seq),
                readings=[Reading(sensor="env", metric="temperature", value=temperature[0],
                                  time=datetime.now(UTC))],
            )  # fmt: skip
            link.publish(settings.topics.telemetry("lab", "oven-1"), encode(event), qos=1)

    with gateway_thread(settings) as gw, MqttLink(mqtt) as link:
        reporter = threading.Thread(target=report, args=(link,), daemon=True)
        reporter.start()
        dash = Dashboard(settings, port=0, token="t", poll_s=1.0).start()
        try:
            views = Views(gw.query)
            wait_for(lambda: len(views.fleet()) == 1, 30, "oven-1 in InfluxDB")
            p.goto(dash.url_with_token)
            expect(p.get_by_test_id("device")).to_have_count(1, timeout=10_000)
            p.evaluate("window.__sameDocument = true")

            temperature[0] = 95.0  # the anomaly
            row = p.locator("[data-testid=alarm]")
            expect(row).to_have_count(1, timeout=10_000)
            expect(row).to_have_attribute("data-state", "active")
            row.get_by_role("button", name="Acknowledge").click()
            expect(row).to_have_attribute("data-state", "acknowledged", timeout=10_000)
            wait_for(
                lambda: bool(views.alarm_history(AlarmFilter(state="acknowledged"))),
                15, "the gateway's acknowledged event in InfluxDB",
            )  # fmt: skip

            temperature[0] = 21.0  # the anomaly ends
            expect(row).to_have_count(0, timeout=15_000)
            wait_for(lambda: views.active_alarms() == [], 15, "the clear in InfluxDB")
            assert p.evaluate("window.__sameDocument") is True
        finally:
            stop.set()
            reporter.join(5)
            dash.stop()
