"""The dashboard's live feed when the broker goes away and comes back, as the page shows it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.mqtt import MqttLink, MqttSettings
from gateway.dashboard.server import Dashboard
from gateway.localstack.services import ManagedProcess, free_port, start_mosquitto
from gateway.settings import GatewaySettings
from tests.integration.dashboard_kit import alarm_events
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def test_the_feed_reconnects_with_backoff_and_the_page_says_so(
    gateway_settings: GatewaySettings, tmp_path: Path, browser_page: object
) -> None:
    from playwright.sync_api import Page, expect

    p: Page = browser_page  # type: ignore[assignment]
    port = free_port()
    broker: ManagedProcess = start_mosquitto(tmp_path / "a", port=port)[0]
    settings = gateway_settings.model_copy(
        update={"mqtt": gateway_settings.mqtt.model_copy(update={"port": port})}
    )
    dash = Dashboard(settings, port=0, token="feed-test-token", poll_s=60).start()
    try:
        p.goto(dash.url_with_token)
        feed = p.get_by_test_id("feed")
        expect(feed).to_have_attribute("data-state", "connected", timeout=15_000)
        expect(feed).to_have_text("alarm feed live")

        broker.stop()
        expect(feed).to_have_attribute("data-state", "reconnecting", timeout=15_000)
        wait_for(lambda: dash.stats()["feed"]["error"] is not None, 15, "the feed's error reported")
        # The title says which broker and why (the error, the next try).
        expect(feed).to_have_attribute("title", re.compile(rf"^mqtt://127\.0\.0\.1:{port}: .+"))

        broker = start_mosquitto(tmp_path / "b", port=port)[0]
        expect(feed).to_have_attribute("data-state", "connected", timeout=60_000)

        # And it delivers again: an alarm on MQTT reaches the page without a reload.
        raised, _ = alarm_events("after-outage", "plant", "pump-9")
        with MqttLink(MqttSettings(host=settings.mqtt.host, port=port)) as link:
            link.publish(settings.topics.alarms("plant", "pump-9"), raised, qos=1).wait(5)
        row = p.locator('[data-testid=alarm][data-alarm-id="after-outage"]')
        expect(row).to_have_count(1, timeout=10_000)
    finally:
        dash.stop()
        broker.stop()
