"""The deploy/edge examples against a real mosquitto: TLS (mutual), passwords, the ACL.

The broker runs the listener config and the ACL shipped in deploy/edge (paths and
port replaced, client certificates required), with a password per device; the agent
talks to it over mutual TLS with a username and a password.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from edge_testkit import AgentThread, Subscriber, agent_overrides, received_events, wait_for

from contract.codec import decode
from contract.errors import BrokerError
from contract.events import DeviceOnlineEvent

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "edge"
# A device's broker user is "<site>/<device>" (deploy/edge/make-passwd.sh).
PASSWORDS = {"itest/dev-a": "pw-a-123", "itest/dev-b": "pw-b-456", "sg-operator": "pw-op-789"}


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(d: Path) -> None:
    """A throwaway CA, a broker certificate for 127.0.0.1 and client certificates."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=sg-test-ca", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("broker", "dev-a", "sg-operator"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)  # fmt: skip
        extra = ["-extfile", "san.ext"] if name == "broker" else []
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *extra, cwd=d)  # fmt: skip


@pytest.fixture
def secure_broker() -> Iterator[tuple[int, Path]]:
    """mosquitto with TLS (client certificates required), passwords and the shipped ACL."""
    from gateway.localstack.services import ManagedProcess, find_binary, free_port

    for tool in ("openssl", "mosquitto_passwd"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed: apt-get install -y openssl mosquitto-clients")
    work = Path(tempfile.mkdtemp(prefix="sg-edge-tls-"))
    work.chmod(0o755)  # mosquitto drops to its own user when started as root
    _certificates(work)
    passwd = work / "passwd"
    for i, (user, password) in enumerate(PASSWORDS.items()):
        flags = ["-c"] if i == 0 else []
        subprocess.run(["mosquitto_passwd", *flags, "-b", str(passwd), user, password], check=True)
    shutil.copy(DEPLOY / "mosquitto-acl.conf", work / "acl")
    for f in work.iterdir():
        f.chmod(0o644)
    shutil.copy(work / "ca.crt", work / "clients-ca.crt")  # the services listener's CA
    port, services_port = free_port(), free_port()
    # The shipped listener config, with this test's paths and port, client certs required.
    conf = work / "mosquitto.conf"
    text = (DEPLOY / "mosquitto.conf.example").read_text()
    for old, new in [
        ("/etc/mosquitto/sensorgate.passwd", str(passwd)),
        ("/etc/mosquitto/sensorgate.acl", str(work / "acl")),
        ("persistence_location /var/lib/mosquitto/", f"persistence_location {work}/"),
        ("listener 8883", f"listener {port} 127.0.0.1"),
        ("listener 8884", f"listener {services_port} 127.0.0.1"),
        ("/etc/mosquitto/certs/", f"{work}/"),
        ("# require_certificate true", "require_certificate true"),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    conf.write_text(text + "log_dest stdout\n")
    proc = ManagedProcess("mosquitto", [find_binary("mosquitto"), "-c", str(conf)], work / "log")

    def accepting() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        return False

    try:
        wait_for(lambda: accepting() or not proc.alive(), 15, "the TLS broker")
        assert proc.alive(), proc.log_tail()
        assert "port 1883" not in proc.log_tail(50), "the example opened a default listener"
        yield port, work
    finally:
        proc.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_agent_over_mutual_tls_with_password_and_acl(
    secure_broker: tuple[int, Path],
    tmp_path: Path,
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    from edge.mqtt import MqttLink, MqttSettings, TlsSettings

    port, certs = secure_broker
    tls = {
        "ca_file": str(certs / "ca.crt"),
        "cert_file": str(certs / "dev-a.crt"),
        "key_file": str(certs / "dev-a.key"),
    }
    operator = subscriber_factory(
        "127.0.0.1",
        port,
        "sg/v1/#",
        username="sg-operator",
        password=PASSWORDS["sg-operator"],
        tls=(str(certs / "ca.crt"), str(certs / "sg-operator.crt"), str(certs / "sg-operator.key")),
    )
    overrides: dict[str, Any] = agent_overrides(tmp_path, "sg/v1", port, interval=0.02)
    overrides["device"] = "dev-a"
    overrides["mqtt"] |= {
        "username": "itest/dev-a",
        "password": PASSWORDS["itest/dev-a"],
        "tls": tls,
    }
    runner = AgentThread(overrides)
    with runner:
        wait_for(
            lambda: len(received_events(operator.snapshot(), "sg/v1/itest/dev-a/telemetry")) >= 3,
            15,
            "dev-a telemetry at the operator",
        )
        statuses = [decode(p) for t, p, _r in operator.snapshot() if t.endswith("dev-a/status")]
        assert isinstance(statuses[0], DeviceOnlineEvent)
        assert statuses[0].data.reason == "birth"

        # dev-a's credentials cannot publish under dev-b, nor outside the scheme
        settings = MqttSettings(
            port=port,
            client_id="dev-a-rogue",  # replaced by the username on this listener
            username="itest/dev-a",
            password=PASSWORDS["itest/dev-a"],
            tls=TlsSettings(**tls),  # type: ignore[arg-type]
        )
        runner.stop()  # the rogue takes over dev-a's client id (use_username_as_clientid)
        with MqttLink(settings) as rogue:
            forged = [
                rogue.publish(topic, b"forged", qos=1)
                for topic in (
                    "sg/v1/itest/dev-b/telemetry",
                    "sg/v1/itest/dev-b/status",
                    "sg/v1/other/dev-a/telemetry",  # its own device id, another site
                )
            ]
            assert all(t.wait(5) and t.refused for t in forged)  # MQTT 5: told, 0x87
            assert rogue.publish("sg/v1/itest/dev-a/telemetry", b"marker", qos=1).wait(5)
            wait_for(
                lambda: any(p == b"marker" for _t, p, _r in operator.snapshot()), 10, "the marker"
            )
        assert not any(p == b"forged" for _t, p, _r in operator.snapshot())
        assert not any("dev-b" in t for t, _p, _r in operator.snapshot())

    # a wrong password is refused
    bad = MqttSettings(
        port=port,
        username="itest/dev-b",
        password="wrong",
        tls=TlsSettings(**tls),  # type: ignore[arg-type]
    )
    with pytest.raises(BrokerError, match="no connection"):
        MqttLink(bad).start(wait_s=2)
    assert os.path.exists(certs / "acl")
