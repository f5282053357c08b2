"""Fixtures that run the real gateway flow against the session's mosquitto and influxd.

Only fixtures live here: the helpers they use (``wait_for``, ``gateway_thread``,
``RunningGateway``) are in plain modules (:mod:`tests.waiting`,
:mod:`tests.integration.gateway_kit`) that test modules import. No test module imports
a conftest (ruff's banned-api rule in pyproject.toml says so).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.mqtt import MqttLink, MqttSettings
from gateway.localstack.services import ServiceEndpoints
from gateway.settings import GatewaySettings, load_settings
from tests.integration.browser_kit import chromium_page
from tests.integration.gateway_kit import RunningGateway, gateway_thread


@pytest.fixture
def gateway_settings(services: ServiceEndpoints, unique: str, tmp_path: Path) -> GatewaySettings:
    """Settings for one test: its own topic prefix, database, client ids and state."""
    return load_settings(
        # Recovery is on by default: each test has its own folder (and spill).
        recovery_dir=tmp_path / "recovery",
        topic_prefix=f"sgtest/{unique}",
        gateway_id=f"gw-{unique}",
        mqtt={
            "host": services.mqtt_host,
            "port": services.mqtt_port,
            "client_id_prefix": f"gw-{unique}",
            "share_group": f"g{unique}",
        },
        # Every aggregate field (the default stores a lean four): tests check them all.
        influx={
            "url": services.influx_url,
            "database": f"t_{unique}",
            "aggregate_fields": ["count", "mean", "min", "max", "stddev", "first", "last"],
            "spill_dir": tmp_path / "spill",
        },
        # 10 s windows (the default is 1 min) so that tests see windows close quickly.
        stream={"allowed_lateness_s": 2, "windows": ["10s", "1m"]},
        epoch_interval_s=0.5,
        metrics_port=0,
    )


@pytest.fixture
def running_gateway(gateway_settings: GatewaySettings) -> Iterator[RunningGateway]:
    """The gateway flow running in a thread of the test process, stopped at the end."""
    with gateway_thread(gateway_settings) as gateway:
        yield gateway


@pytest.fixture
def publisher(services: ServiceEndpoints) -> Iterator[MqttLink]:
    """A connected MQTT client for publishing test telemetry."""
    link = MqttLink(MqttSettings(host=services.mqtt_host, port=services.mqtt_port))
    link.start()
    yield link
    link.stop()


@pytest.fixture
def browser_page() -> Iterator[object]:
    """A page in a headless chromium (Playwright), closed at the end."""
    with chromium_page() as page:
        yield page
