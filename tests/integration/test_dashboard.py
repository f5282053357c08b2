"""The web dashboard end to end, in headless Chromium driven by Playwright.

The real stack runs: mosquitto, influxd, the gateway flow (readings and aggregates
into InfluxDB) and the simulated demo fleet. The alarm stage of the gateway is not on
this branch yet, so the test plays its part for one injected anomaly: it publishes
the alarm events on the device's MQTT alarm topic and writes the alarm points to
InfluxDB in the documented schema, exactly what the gateway's alarm sink is to do.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from contract import Reading, TelemetryEvent
from contract.alarms import (
    AlarmAcknowledgedEvent,
    AlarmClearedEvent,
    AlarmRaisedEvent,
    alarm_id_for,
    encode_alarm,
)
from contract.codec import encode
from edge.mqtt import MqttLink, MqttSettings
from gateway.dashboard.server import Dashboard
from gateway.settings import GatewaySettings
from gateway.views import Views
from simulators.demo import start_demo_fleet
from tests.integration.gateway_kit import RunningGateway
from tests.integration.views_kit import aggregate_line, alarm_line, reading_line, write
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


class AlarmStage:
    """Plays the gateway's alarm stage for one alarm: MQTT event + InfluxDB point."""

    def __init__(self, settings: GatewaySettings, link: MqttLink, site: str, device: str) -> None:
        self.settings, self.link, self.site, self.device = settings, link, site, device
        self.raised_at = datetime.now(UTC)
        self.alarm_id = alarm_id_for(
            site, device, "env/temperature", "temp-high", int(self.raised_at.timestamp() * 1e6)
        )

    def emit(self, cls: type, state: str, **extra: object) -> None:
        at = datetime.now(UTC)
        event = cls.create(
            alarm_id=self.alarm_id,
            site=self.site,
            device=self.device,
            sensor="env",
            metric="temperature",
            rule="temp-high",
            kind="threshold",
            severity="critical",
            state=state,
            value=95.0,
            threshold=40.0,
            message="temperature above 40",
            event_time=at,
            raised_at=self.raised_at,
            **extra,
        )
        self.link.publish(
            self.settings.topics.alarms(self.site, self.device), encode_alarm(event), qos=1
        ).wait(5)
        write(
            self.settings.influx,
            [
                alarm_line(
                    site=self.site,
                    device=self.device,
                    metric="temperature",
                    rule="temp-high",
                    severity="critical",
                    state=state,
                    alarm_id=self.alarm_id,
                    when=at,
                    value=95.0,
                    threshold=40.0,
                    message="temperature above 40",
                )
            ],
        )


def backfill(settings: GatewaySettings, site: str, device: str) -> None:
    """Fourteen minutes of history before the live fleet, with one past alarm."""
    import math

    now = datetime.now(UTC)
    lines = []
    for k in range(14 * 60 // 5):
        when = now - timedelta(seconds=20 + 5 * k)
        temp = 21 + 2 * math.sin(k / 20) + (6 if 70 < k < 80 else 0)
        hum = 39 + 1.5 * math.cos(k / 30)
        lines.append(reading_line(site, device, "env", "temperature", temp, when))
        lines.append(reading_line(site, device, "env", "humidity", hum, when))
        if k % 2 == 0:
            lines.append(aggregate_line(site, device, "env", "temperature", "10s", temp, when))
            lines.append(aggregate_line(site, device, "env", "humidity", "10s", hum, when))
    for state, k in (("active", 79), ("cleared", 71)):
        lines.append(
            alarm_line(
                site=site,
                device=device,
                metric="temperature",
                rule="temp-rate",
                severity="major",
                state=state,
                alarm_id="past-rate-alarm",
                when=now - timedelta(seconds=20 + 5 * k),
                value=27.0,
                threshold=25.0,
                message="temperature rising fast",
            )
        )
    write(settings.influx, lines)


def test_dashboard_shows_live_alarm_ack_and_clear(
    running_gateway: RunningGateway, browser_page: object
) -> None:
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    settings = running_gateway.settings
    mqtt = MqttSettings(host=settings.mqtt.host, port=settings.mqtt.port)
    fleet = start_demo_fleet(mqtt, settings.topics, devices=5, interval_s=1.0)
    commands: list[dict[str, object]] = []
    got_command = threading.Event()

    def on_command(msg: object) -> None:
        commands.append(json.loads(msg.payload))  # type: ignore[attr-defined]
        got_command.set()

    watcher = MqttLink(
        MqttSettings(host=mqtt.host, port=mqtt.port),
        on_connect=lambda link: link.subscribe(f"{settings.topic_prefix}/+/+/commands"),
        on_message=on_command,
    )
    watcher.start()
    link = MqttLink(mqtt)
    link.start()
    dash = Dashboard(settings, port=0, token="s3cret", poll_s=1.0).start()
    try:
        views = Views(running_gateway.query)
        wait_for(lambda: len(views.fleet()) >= 5, 60, "the demo fleet's readings in InfluxDB")
        backfill(settings, "demo", "demo-002")
        page.goto(dash.url_with_token)
        expect(page.get_by_test_id("device")).to_have_count(5, timeout=15_000)
        expect(page.get_by_test_id("live")).to_have_text("live", timeout=10_000)
        page.evaluate("window.__sameDocument = true")

        # The anomaly: demo-002 reports 95 degrees; the alarm stage raises an alarm.
        device = "demo-002"
        hot = TelemetryEvent.create(
            site="demo",
            device=device,
            sequence=10**9,
            readings=[
                Reading(sensor="env", metric="temperature", value=95.0, time=datetime.now(UTC))
            ],
        )
        link.publish(settings.topics.telemetry("demo", device), encode(hot), qos=1).wait(5)
        stage = AlarmStage(settings, link, "demo", device)
        stage.emit(AlarmRaisedEvent, "active")
        row = page.locator(f'[data-testid=alarm][data-alarm-id="{stage.alarm_id}"]')
        expect(row).to_have_attribute("data-state", "active", timeout=5_000)
        expect(page.get_by_test_id("card-sev-critical")).to_contain_text("1")
        assert page.evaluate("window.__sameDocument") is True, "the page reloaded"

        # Fleet updates (one per poll) leave the alarm rows alone: a button rebuilt
        # between mousedown and mouseup swallows the click.
        button = row.get_by_role("button", name="Acknowledge").element_handle()
        count = "() => window.sgStats.updates.filter((u) => u.kind === 'fleet').length"
        seen = page.evaluate(count)
        wait_for(lambda: page.evaluate(count) >= seen + 2, 15, "two fleet updates on the page")
        assert button.evaluate("(b) => b.isConnected"), "a fleet update rebuilt the alarm rows"

        # Acknowledge: the command goes out over MQTT; the gateway answers with an event.
        row.get_by_role("button", name="Acknowledge").click()
        assert got_command.wait(10), "no acknowledge command on MQTT"
        cmd = commands[-1]
        assert cmd["type"] == "io.sensorgate.alarm.acknowledge.v1"
        assert cmd["data"] == {
            "site": "demo",
            "device": device,
            "alarm_id": stage.alarm_id,
            "by": "dashboard",
            "note": "",
        }
        stage.emit(
            AlarmAcknowledgedEvent,
            "acknowledged",
            acknowledged_by="dashboard",
            acknowledged_at=datetime.now(UTC),
        )
        expect(row).to_have_attribute("data-state", "acknowledged", timeout=5_000)
        wait_for(
            lambda: [a.state for a in views.active_alarms()] == ["acknowledged"],
            10,
            "the acknowledged state in InfluxDB",
        )
        IMG.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(IMG / "dashboard-fleet.png"), full_page=True)

        # The device page: charts with the alarm on the time axis.
        page.get_by_role("link", name=device).first.click()
        expect(page.get_by_test_id("device-title")).to_contain_text(device)
        expect(page.get_by_test_id("chart").first).to_be_visible(timeout=10_000)
        expect(page.get_by_test_id("alarm-marker").first).to_be_visible(timeout=10_000)
        page.locator('.ranges button[data-range="15m"]').click()
        expect(page.get_by_test_id("alarm-marker").first).to_be_visible(timeout=10_000)
        page.screenshot(path=str(IMG / "dashboard-device.png"), full_page=True)

        # The anomaly ends: the alarm clears and leaves the active list, live.
        page.get_by_role("link", name="Fleet").first.click()
        expect(row).to_be_visible(timeout=5_000)
        stage.emit(AlarmClearedEvent, "cleared")
        expect(row).to_have_count(0, timeout=5_000)
        expect(page.get_by_test_id("no-alarms")).to_be_visible()
        wait_for(lambda: views.active_alarms() == [], 10, "the clear in InfluxDB")
        assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    finally:
        dash.stop()
        link.stop()
        watcher.stop()
        fleet.stop()


def test_read_only_and_token(running_gateway: RunningGateway) -> None:
    settings = running_gateway.settings
    with Dashboard(settings, port=0, read_only=True, public_read=True, poll_s=1.0) as ro:
        assert httpx.get(ro.url + "api/config").json()["read_only"] is True
        resp = httpx.post(ro.url + "api/ack", json={"site": "s", "device": "d", "alarm_id": "a"})
        assert resp.status_code == 403
    with Dashboard(settings, port=0, token="right", public_read=True, poll_s=1.0) as dash:
        body = {"site": "s", "device": "d", "alarm_id": "a"}
        assert httpx.post(dash.url + "api/ack", json=body).status_code == 401
        wrong = {"Authorization": "Bearer wrong"}
        assert httpx.post(dash.url + "api/ack", json=body, headers=wrong).status_code == 401
        right = {"Authorization": "Bearer right"}
        assert httpx.post(dash.url + "api/ack", json=body, headers=right).status_code == 202
        bad = {"site": "s/x", "device": "d", "alarm_id": "a"}
        assert httpx.post(dash.url + "api/ack", json=bad, headers=right).status_code == 400
        r = httpx.get(dash.url + "api/device", params={"site": "s", "device": "d\n", "range": "1h"})
        assert r.status_code == 400
        assert httpx.get(dash.url + "static/../server.py").status_code == 404
        assert httpx.get(dash.url + "static/app.js").status_code == 200
