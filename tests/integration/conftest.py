"""Fixtures that run the real gateway flow against the session's mosquitto and influxd."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.mqtt import MqttLink, MqttSettings
from gateway.influx.query import InfluxQL
from gateway.metrics import GatewayMetrics
from gateway.services import ServiceEndpoints
from gateway.settings import GatewaySettings, load_settings

pytestmark = pytest.mark.integration


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds, or fail saying what did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class RunningGateway:
    settings: GatewaySettings
    query: InfluxQL
    thread: threading.Thread
    stop: threading.Event
    metrics: GatewayMetrics


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


@contextlib.contextmanager
def gateway_thread(settings: GatewaySettings, *, workers: int = 1) -> Iterator[RunningGateway]:
    """Run the gateway flow in a thread of the test process; stop it on exit."""
    from gateway.app import prepare_storage, run_gateway

    prepare_storage(settings)
    stop = threading.Event()
    subscribed = threading.Event()
    metrics = GatewayMetrics()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_gateway(
                settings, workers=workers, stop=stop, subscribed=subscribed, metrics=metrics
            )
        except BaseException as exc:  # surfaced in the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="gateway", daemon=True)
    thread.start()
    query = InfluxQL(settings.influx)
    try:
        wait_for(lambda: subscribed.is_set() or bool(errors), 30, "the gateway's subscription")
        yield RunningGateway(settings, query, thread, stop, metrics)
    finally:
        stop.set()
        thread.join(30)
        query.close()
    assert not thread.is_alive(), "the gateway did not stop within 30 s"
    assert not errors, f"the gateway failed: {errors[0]!r}"


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
