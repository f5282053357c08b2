"""The local services launcher: readiness, clean stop, no orphans, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract.errors import ServiceError
from edge import childproc
from gateway.localstack import services as services_mod
from gateway.localstack.services import LocalServices, ServiceEndpoints
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.split(")")[-1].split()[0] != "Z"


def test_session_services_answer(services: ServiceEndpoints) -> None:
    assert httpx.get(f"{services.influx_url}/ping").status_code == 204
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    assert client.connect(services.mqtt_host, services.mqtt_port) == mqtt.MQTT_ERR_SUCCESS
    client.disconnect()
    assert services.mqtt_host == "127.0.0.1"


def test_start_and_stop_leave_nothing_behind(tmp_path: Path) -> None:
    local = LocalServices(workdir=tmp_path)
    local.start()
    assert local.mosquitto is not None
    assert local.influxd is not None
    pids = [local.mosquitto.pid, local.influxd.pid]
    conf = (tmp_path / "mosquitto" / "mosquitto.conf").read_text()
    assert "max_inflight_messages 0" in conf
    assert "listener" in conf
    assert "127.0.0.1" in conf
    local.stop()
    assert not any(_alive(pid) for pid in pids)


_CHILD = """
import json, sys, time
from gateway.localstack.services import LocalServices
local = LocalServices()
local.start()
print(json.dumps([local.mosquitto.pid, local.influxd.pid]), flush=True)
time.sleep(600)  # a stand-in that lives until the test kills it
"""


def test_services_die_with_a_killed_parent() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pids = json.loads(parent.stdout.readline())
    parent.stdout.close()
    assert all(_alive(pid) for pid in pids)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    wait_for(lambda: not any(_alive(pid) for pid in pids), 20, "services to die with the parent")


def test_missing_binary_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(childproc, "_SBIN_DIRS", ())
    with pytest.raises(ServiceError, match="apt-get install -y mosquitto"):
        services_mod.find_binary("mosquitto")
    with pytest.raises(ServiceError, match="apt-get install -y influxdb"):
        services_mod.find_binary("influxd")


def test_a_service_that_dies_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    # Two brokers on one port: the second cannot bind and exits.
    proc, port = services_mod.start_mosquitto(tmp_path / "a")
    try:
        with pytest.raises(ServiceError, match="mosquitto exited with code"):
            services_mod.start_mosquitto(tmp_path / "b", port=port, timeout=10)
    finally:
        proc.stop()


def test_mosquitto_may_hold_a_simulated_fleet_of_connections(tmp_path: Path) -> None:
    # One connection per simulated device: the broker's open-file limit is lifted as far
    # as the system allows, and its config puts no cap on the number of clients.
    import resource

    proc, _port = services_mod.start_mosquitto(tmp_path)
    try:
        limits = Path(f"/proc/{proc.pid}/limits").read_text().splitlines()
        soft = int(next(line for line in limits if line.startswith("Max open files")).split()[3])
        assert soft >= resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        conf = (tmp_path / "mosquitto" / "mosquitto.conf").read_text().splitlines()
        assert "max_connections -1" in conf
    finally:
        proc.stop()
