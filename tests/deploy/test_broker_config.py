"""The compose stack's broker for real: its mosquitto.conf, start.sh, the shipped ACL and
the certificates of init-secrets.sh, run by the Debian mosquitto on loopback ports.

Paths and ports of the file are rewritten to a throwaway directory and free ports;
everything else (listeners' options, ACL, TLS files, password hashing) is as shipped.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.errors import BrokerError
from edge.childproc import listens
from edge.mqtt import MqttLink, MqttSettings, TlsSettings
from gateway.localstack.services import ManagedProcess, find_binary, free_port
from tests.deploy.deploy_kit import DEPLOY
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

COMPOSE = DEPLOY / "compose"
USERS = (
    "sg-gateway:mqtt_gateway_password"
    " sg-simulator:mqtt_simulator_password"
    " compose/edge-01:mqtt_edge_password"
)


class Broker:
    def __init__(self, secrets: Path, plain: int, tls: int) -> None:
        self.secrets, self.plain, self.tls = secrets, plain, tls

    def password(self, secret: str) -> str:
        return (self.secrets / secret).read_text().strip()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    work = tmp_path_factory.mktemp("broker")
    secrets = work / "secrets"
    subprocess.run(
        ["sh", str(COMPOSE / "init-secrets.sh"), str(secrets)], check=True, capture_output=True
    )
    plain, tls = free_port(), free_port()
    conf = (COMPOSE / "mosquitto" / "mosquitto.conf").read_text()
    conf = (
        conf.replace("/mosquitto/run/", f"{work}/run/")
        .replace("/mosquitto/config/sensorgate.acl", str(DEPLOY / "edge" / "mosquitto-acl.conf"))
        .replace("/mosquitto/data/", f"{work}/data/")
        .replace("listener 1883\n", f"listener {plain} 127.0.0.1\n")
        .replace("listener 8883\n", f"listener {tls} 127.0.0.1\n")
    )
    # As root mosquitto would switch to its own user; stay who we are (services.py).
    conf = f"user {getpass.getuser()}\n" + conf
    (work / "data").mkdir()
    (work / "mosquitto.conf").write_text(conf)
    mosquitto_dir = str(Path(find_binary("mosquitto")).parent)
    env = {
        **os.environ,
        "PATH": f"{mosquitto_dir}:/usr/bin:/bin:{os.environ.get('PATH', '')}",
        "SG_SECRETS_DIR": str(secrets),
        "SG_MOSQUITTO_RUN": str(work / "run"),
        "SG_MOSQUITTO_USER": getpass.getuser(),
        "SG_MOSQUITTO_CONF": str(work / "mosquitto.conf"),
        "SG_MQTT_USERS": USERS,
    }
    proc = ManagedProcess(
        "mosquitto", ["sh", str(COMPOSE / "mosquitto" / "start.sh")], work / "log", env=env
    )
    deadline = time.monotonic() + 20
    while not (listens(proc.pid, plain) and listens(proc.pid, tls)):
        assert proc.alive(), proc.log_tail()
        assert time.monotonic() < deadline, proc.log_tail()
        time.sleep(0.1)
    assert "sg-gateway:$" in (work / "run" / "passwd").read_text(), "passwords are hashed"
    yield Broker(secrets, plain, tls)
    proc.stop()


def _link(broker: Broker, user: str, secret: str, *, tls: bool, client_id: str = "") -> MqttLink:
    settings = MqttSettings(
        host="127.0.0.1",
        port=broker.tls if tls else broker.plain,
        username=user,
        password=broker.password(secret),
        client_id=client_id or f"{user}-{uuid.uuid4().hex[:6]}",
        tls=TlsSettings(ca_file=broker.secrets / "mqtt_ca_crt") if tls else None,
    )
    return MqttLink(settings)


def _collect(link: MqttLink, topic: str) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def on_message(_c: object, _u: object, msg: object) -> None:
        with lock:
            got.append((msg.topic, msg.payload))  # type: ignore[attr-defined]

    subscribed = threading.Event()
    link.client.on_message = on_message
    link.client.on_subscribe = lambda *_a: subscribed.set()
    link.subscribe(topic, qos=1)
    assert subscribed.wait(10), f"no SUBACK for {topic}"
    return got


def test_a_device_over_tls_reaches_the_gateway_only_under_its_own_topics(broker: Broker) -> None:
    gateway = _link(broker, "sg-gateway", "mqtt_gateway_password", tls=False)
    gateway.start()
    device = _link(broker, "compose/edge-01", "mqtt_edge_password", tls=True, client_id="edge-01")
    device.start()
    try:
        got = _collect(gateway, "$share/sensorgate/sg/v1/+/+/telemetry")
        device.publish("sg/v1/compose/pump-9/telemetry", b"not mine", qos=1).wait(10)
        device.publish("sg/v1/other-site/edge-01/telemetry", b"not mine", qos=1).wait(10)
        device.publish("sg/v1/compose/edge-01/telemetry", b"mine", qos=1).wait(10)
        wait_for(
            lambda: ("sg/v1/compose/edge-01/telemetry", b"mine") in got, 10, "the device's own"
        )
        # Both were sent in order on one connection: the refused one would be first.
        assert got == [("sg/v1/compose/edge-01/telemetry", b"mine")]
    finally:
        device.stop()
        gateway.stop()


def test_the_simulator_publishes_for_any_device_but_cannot_read(broker: Broker) -> None:
    gateway = _link(broker, "sg-gateway", "mqtt_gateway_password", tls=False)
    gateway.start()
    sim = _link(broker, "sg-simulator", "mqtt_simulator_password", tls=False)
    sim.start()
    try:
        got = _collect(gateway, "sg/v1/+/+/telemetry")
        snooped = _collect(sim, "sg/v1/#")
        for device in ("a", "b"):
            sim.publish(f"sg/v1/sim/{device}/telemetry", device.encode(), qos=1).wait(10)
        wait_for(lambda: len(got) == 2, 10, "the simulated devices' telemetry")
        assert snooped == []
    finally:
        sim.stop()
        gateway.stop()


def test_a_wrong_password_or_a_plain_connection_to_the_tls_port_is_refused(
    broker: Broker,
) -> None:
    settings = MqttSettings(
        host="127.0.0.1",
        port=broker.plain,
        username="sg-gateway",
        password="wrong",
        client_id="intruder",
    )
    bad = MqttLink(settings)
    with pytest.raises(BrokerError, match="Not authorized"):
        bad.start(wait_s=30, fail_fast=True)  # the first refusal, no timeout waited out
    bad.stop()
    clear = MqttLink(
        MqttSettings(
            host="127.0.0.1",
            port=broker.tls,
            username="compose/edge-01",
            password=broker.password("mqtt_edge_password"),
            client_id="edge-01",
        )
    )
    with pytest.raises(BrokerError, match="closed before the broker accepted it"):
        clear.start(wait_s=30, fail_fast=True)
    clear.stop()
