"""The shipped broker config for real: one user per role, the ACL, TLS and mutual TLS.

mosquitto runs ``deploy/edge/mosquitto.conf.example`` with the shipped ACL
(``deploy/edge/mosquitto-acl.conf``), users made by ``deploy/edge/make-passwd.sh`` and
certificates made at test time by ``deploy/edge/make-certs.sh``; only paths and ports
are rewritten (to a throwaway folder and free loopback ports). Everything else (the
listeners' options, limits, ACL, password hashing) is as shipped. The gateway and the
CLI connect through their settings, as in production.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from contract import Reading, TelemetryEvent, encode
from contract.alarms import decode_alarm
from contract.errors import BrokerError
from edge.childproc import listens as _listens
from edge.mqtt import MqttLink, MqttSettings, TlsSettings
from gateway.localstack.services import (
    ManagedProcess,
    ServiceEndpoints,
    find_binary,
    free_port,
)
from gateway.settings import GatewaySettings, load_settings, settings_env
from tests.deploy.deploy_kit import DEPLOY
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

EDGE = DEPLOY / "edge"
DEVICES = (("site-a", "dev-1"), ("site-a", "dev-2"), ("site-b", "dev-1"), ("e2e", "pump"))
ROLES = ("sg-gateway", "sg-operator", "sg-dashboard")
NOT_AUTHORIZED = 0x87
_CLI = [sys.executable, "-m", "gateway.cli"]


class Broker:
    """The running broker: its ports, certificates and the users' passwords."""

    def __init__(self, work: Path, device_port: int, service_port: int) -> None:
        self.work, self.device_port, self.service_port = work, device_port, service_port
        self.certs = work / "certs"
        self.wrong = work / "wrong"  # another CA, broker and role certificates
        self.passwords: dict[str, str] = {}

    def device(self, site: str, device: str, **update: Any) -> MqttSettings:
        """A device's link: the device listener, TLS with the CA, user ``site/device``."""
        settings = MqttSettings(
            host="127.0.0.1",
            port=self.device_port,
            username=f"{site}/{device}",
            password=self.passwords[f"{site}/{device}"],
            client_id=device,  # replaced by the user name on this listener
            clean_session=True,
            tls=TlsSettings(ca_file=self.certs / "ca.crt"),
            reconnect_min_s=0.1,
        )
        return settings.model_copy(update=update)

    def role_tls(self, role: str, certs: Path | None = None) -> TlsSettings:
        certs = certs or self.certs
        return TlsSettings(
            ca_file=self.certs / "ca.crt",
            cert_file=certs / f"{role}.crt",
            key_file=certs / f"{role}.key",
        )

    def service(self, role: str, **update: Any) -> MqttSettings:
        """A role's link: the services listener, mutual TLS and the role's password."""
        settings = MqttSettings(
            host="127.0.0.1",
            port=self.service_port,
            username=role,
            password=self.passwords[role],
            client_id=f"{role}-{uuid.uuid4().hex[:8]}",
            clean_session=True,
            tls=self.role_tls(role),
            reconnect_min_s=0.1,
        )
        return settings.model_copy(update=update)

    def gateway_mqtt(self, unique: str) -> dict[str, Any]:
        """``mqtt`` settings of a gateway as a deployment would write them."""
        return {
            "host": "127.0.0.1",
            "port": self.service_port,
            "username": "sg-gateway",
            "password": self.passwords["sg-gateway"],
            "tls": {
                "ca_file": str(self.certs / "ca.crt"),
                "cert_file": str(self.certs / "sg-gateway.crt"),
                "key_file": str(self.certs / "sg-gateway.key"),
            },
            "operator": {
                "username": "sg-operator",
                "password": self.passwords["sg-operator"],
                "cert_file": str(self.certs / "sg-operator.crt"),
                "key_file": str(self.certs / "sg-operator.key"),
            },
            "dashboard": {
                "username": "sg-dashboard",
                "password": self.passwords["sg-dashboard"],
                "cert_file": str(self.certs / "sg-dashboard.crt"),
                "key_file": str(self.certs / "sg-dashboard.key"),
            },
            "client_id_prefix": f"gw-{unique}",
            "share_group": f"g{unique}",
        }


def _make_passwd(args: list[str], passwd: Path) -> tuple[str, str]:
    out = subprocess.run(
        ["bash", str(EDGE / "make-passwd.sh"), *args, str(passwd)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = dict(re.findall(r"^SENSORGATE_MQTT__(USERNAME|PASSWORD)=(.*)$", out, re.M))
    return found["USERNAME"], found["PASSWORD"]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    for tool in ("openssl", "mosquitto_passwd"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed: apt-get install -y openssl mosquitto")
    work = tmp_path_factory.mktemp("roles")
    work.chmod(0o755)
    b = Broker(work, free_port(), free_port())
    for folder in (b.certs, b.wrong):
        subprocess.run(
            ["sh", str(EDGE / "make-certs.sh"), str(folder), *ROLES, "sg-intruder"],
            check=True,
            capture_output=True,
        )
    passwd = work / "passwd"
    for site, device in DEVICES:
        user, password = _make_passwd([site, device], passwd)
        b.passwords[user] = password
    for role in ROLES:
        user, password = _make_passwd(["--role", role], passwd)
        b.passwords[user] = password
    conf = (EDGE / "mosquitto.conf.example").read_text()
    for old, new in [
        ("/etc/mosquitto/sensorgate.passwd", str(passwd)),
        ("/etc/mosquitto/sensorgate.acl", str(EDGE / "mosquitto-acl.conf")),
        ("persistence_location /var/lib/mosquitto/", f"persistence_location {work}/data/"),
        ("/etc/mosquitto/certs/", f"{b.certs}/"),
        ("listener 8883\n", f"listener {b.device_port} 127.0.0.1\n"),
        ("listener 8884\n", f"listener {b.service_port} 127.0.0.1\n"),
    ]:
        assert old in conf, f"the shipped config no longer has {old!r}"
        conf = conf.replace(old, new)
    (work / "data").mkdir()
    # As root mosquitto would switch to its own user; stay who we are (services.py).
    (work / "mosquitto.conf").write_text(f"user {getpass.getuser()}\n{conf}log_dest stdout\n")
    proc = ManagedProcess(
        "mosquitto", [find_binary("mosquitto"), "-c", str(work / "mosquitto.conf")], work / "log"
    )
    deadline = time.monotonic() + 20
    while not (_listens(proc.pid, b.device_port) and _listens(proc.pid, b.service_port)):
        assert proc.alive(), proc.log_tail()
        assert time.monotonic() < deadline, proc.log_tail()
        time.sleep(0.1)
    assert "port 1883" not in proc.log_tail(50), "the example opened a default listener"
    yield b
    proc.stop()


class Listener:
    """A link that subscribes to some filters (one SUBSCRIBE) and keeps what arrives."""

    def __init__(self, settings: MqttSettings, *filters: str) -> None:
        self.got: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._filters = filters
        self.link = MqttLink(settings, on_connect=self._subscribe, on_message=self._keep)
        handle_suback = self.link.client.on_subscribe

        def on_subscribe(*args: Any) -> None:
            handle_suback(*args)  # the link's own: refusals are logged and counted
            self._subscribed.set()

        self.link.client.on_subscribe = on_subscribe

    def _subscribe(self, link: MqttLink) -> None:
        link.client.subscribe([(f, 1) for f in self._filters])

    def _keep(self, msg: Any) -> None:
        with self._lock:
            self.got.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def topics(self) -> list[str]:
        with self._lock:
            return [t for t, _p, _r in self.got]

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _r in self.got if t == topic]

    def __enter__(self) -> Listener:
        self.link.start()
        assert self._subscribed.wait(10), "no SUBACK"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.link.stop()


def _telemetry(site: str, device: str, seq: int, value: float, at: datetime) -> bytes:
    reading = Reading(sensor="s", metric="temperature", value=value, time=at)
    return encode(TelemetryEvent.create(site=site, device=device, sequence=seq, readings=[reading]))


# -- devices -------------------------------------------------------------------------------


def test_a_device_publishes_only_as_its_own_site_and_device(broker: Broker) -> None:
    now = datetime.now(UTC)
    own = "sg/v1/site-a/dev-1/telemetry"
    forged = ["sg/v1/site-a/dev-2/telemetry", "sg/v1/site-b/dev-1/telemetry"]
    forged += [
        "sg/v1/site-a/dev-2/status",
        "sg/v1/site-b/dev-1/status",
        "sg/v1/site-a/dev-1/alarms",
    ]
    group = f"$share/t{uuid.uuid4().hex[:6]}/sg/v1/+/+/telemetry"
    with (
        Listener(broker.service("sg-gateway"), group, "sg/v1/+/+/status") as gateway,
        MqttLink(broker.device("site-a", "dev-1")) as device,
    ):
        tickets = [device.publish(topic, b"forged", qos=1) for topic in forged]
        mine = device.publish(own, _telemetry("site-a", "dev-1", 1, 20.0, now), qos=1)
        assert all(t.wait(10) for t in [*tickets, mine])
        # MQTT 5: the device is told, in each PUBACK, that the broker refused it.
        assert [t.refusal.code if t.refusal else None for t in tickets] == [NOT_AUTHORIZED] * len(
            forged
        )
        assert mine.refusal is None
        assert device.refused == len(forged)
        with pytest.raises(BrokerError, match="Not authorized"):
            tickets[0].raise_if_refused()
        wait_for(lambda: own in gateway.topics(), 20, "the device's own telemetry")
        # Sent in order on one connection: anything forged would have arrived first.
        assert gateway.topics() == [own]


def test_the_device_listener_forces_the_client_id_to_the_user_name(broker: Broker) -> None:
    # dev-2's client id is taken by whoever connects as dev-2: dev-1 cannot kick it off.
    with MqttLink(broker.device("site-a", "dev-2", client_id="site-a/dev-2")) as victim:
        with MqttLink(broker.device("site-a", "dev-1", client_id="site-a/dev-2")) as other:
            ticket = other.publish("sg/v1/site-a/dev-1/telemetry", b"x", qos=1)
            assert ticket.wait(10)
            assert ticket.refusal is None
        assert victim.connected  # never disconnected by a takeover
        assert victim.publish("sg/v1/site-a/dev-2/status", b"x", qos=1).wait(10)


# -- transport ------------------------------------------------------------------------------


def _refused(settings: MqttSettings, why: str) -> None:
    """The first attempt fails (``why`` in the reason); no waiting out a timeout."""
    link = MqttLink(settings)
    try:
        with pytest.raises(BrokerError, match=why):
            link.start(wait_s=30, fail_fast=True)
    finally:
        link.stop()


def test_plaintext_and_wrong_ca_clients_are_refused(broker: Broker) -> None:
    closed = "closed before the broker accepted it"
    handshake = "no TLS handshake"
    # Plain MQTT to either TLS listener: no handshake, no connection.
    _refused(broker.device("site-a", "dev-1", tls=None), closed)
    _refused(broker.service("sg-gateway", tls=None), closed)
    # The client trusts another CA: it refuses the broker's certificate.
    wrong_ca = TlsSettings(ca_file=broker.wrong / "ca.crt")
    _refused(broker.device("site-a", "dev-1", tls=wrong_ca), handshake)
    # Services listener: no client certificate, or one another CA signed, is refused,
    # so a device (its password, no services certificate) cannot get on it.
    no_cert = TlsSettings(ca_file=broker.certs / "ca.crt")
    _refused(broker.service("sg-gateway", tls=no_cert), f"{closed}|{handshake}")
    wrong_cert = broker.role_tls("sg-gateway", broker.wrong)
    _refused(broker.service("sg-gateway", tls=wrong_cert), f"{closed}|{handshake}")
    dev = broker.device("site-a", "dev-1")
    _refused(dev.model_copy(update={"port": broker.service_port}), f"{closed}|{handshake}")
    # The name in the broker's certificate is checked: localhost is in it, this is not.
    named = TlsSettings(ca_file=broker.certs / "ca.crt", server_name="localhost")
    with MqttLink(broker.device("site-a", "dev-1", tls=named)) as link:
        assert link.connected
    other = TlsSettings(ca_file=broker.certs / "ca.crt", server_name="broker.invalid")
    _refused(broker.device("site-a", "dev-1", tls=other), handshake)
    # A wrong password over a good TLS connection: the CONNACK says why.
    _refused(broker.service("sg-gateway", password=SecretStr("wrong")), "Not authorized")


# -- operators acknowledge, nobody else ---------------------------------------------------------


def test_only_the_operator_may_acknowledge(broker: Broker, tmp_path: Path) -> None:
    from gateway.ops.acknowledge import publish_ack

    topic = "sg/v1/site-a/dev-1/commands"
    unique = uuid.uuid4().hex[:8]
    settings = load_settings(topic_prefix="sg/v1", mqtt=broker.gateway_mqtt(unique))
    ack: dict[str, Any] = {"prefix": "sg/v1", "site": "site-a", "device": "dev-1", "by": "me"}
    group = f"$share/g{unique}/sg/v1/+/+/commands"
    with Listener(broker.service("sg-gateway"), group) as gateway:
        for who in ("sg-dashboard", "sg-gateway"):
            mqtt = settings.mqtt.link_settings(f"{who}-{unique}", role="gateway")
            if who == "sg-dashboard":
                mqtt = settings.mqtt.link_settings(f"{who}-{unique}", role="dashboard")
            with pytest.raises(BrokerError, match=r"refused the publish .*Not authorized"):
                publish_ack(mqtt=mqtt, alarm_id=f"by-{who}", **ack)
        device = broker.device("site-a", "dev-1")
        with pytest.raises(BrokerError, match="Not authorized"):
            publish_ack(mqtt=device, alarm_id="by-device", **ack)
        operator = settings.mqtt.link_settings(f"op-{unique}", role="operator")
        publish_ack(mqtt=operator, alarm_id="by-operator", **ack)
        wait_for(lambda: gateway.payloads(topic), 20, "the operator's command at the gateway")
        # The CLI: the operator's user from the settings; the dashboard's is refused (exit 1).
        env = {**os.environ, **settings_env(settings)}
        cli = [*_CLI, "alarms", "ack", "by-cli", "--site", "site-a", "--device", "dev-1"]
        done = subprocess.run(
            [*cli, "--by", "ops"], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        wait_for(lambda: len(gateway.payloads(topic)) == 2, 20, "the CLI's command")
        password = tmp_path / "dashboard-password"
        password.write_text(broker.passwords["sg-dashboard"] + "\n")
        dashboard_env = {
            **env,
            "SENSORGATE_MQTT__OPERATOR__CERT_FILE": str(broker.certs / "sg-dashboard.crt"),
            "SENSORGATE_MQTT__OPERATOR__KEY_FILE": str(broker.certs / "sg-dashboard.key"),
        }
        refused = subprocess.run(
            [*cli, "--by", "x", "--user", "sg-dashboard", "--password-file", str(password)],
            env=dashboard_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 3, refused.stderr  # ExitCode.UNREACHABLE
        assert "Not authorized" in refused.stderr
        assert broker.passwords["sg-dashboard"] not in refused.stderr + refused.stdout
    ids = [json.loads(p)["data"]["alarm_id"] for p in gateway.payloads(topic)]
    assert ids == ["by-operator", "by-cli"]


def test_the_dashboard_connects_as_its_own_user_and_may_not_acknowledge(
    broker: Broker, services: ServiceEndpoints
) -> None:
    """The dashboard: user sg-dashboard over mutual TLS; the ACL keeps its button off."""
    import urllib.error
    import urllib.request

    from gateway.dashboard.server import Dashboard

    unique = uuid.uuid4().hex[:8]
    settings = load_settings(
        topic_prefix="sg/v1",
        mqtt=broker.gateway_mqtt(unique),
        influx={"url": services.influx_url, "database": f"t_{unique}"},
    )
    with Dashboard(settings, port=0, token="t0ken", poll_s=3600) as dash:
        feed = dash.call(lambda core: core.feed)
        assert feed is not None
        assert feed.link_settings.username == "sg-dashboard"
        assert dash.stats()["feed"]["state"] == "connected"
        request = urllib.request.Request(
            f"{dash.url}api/ack",
            data=json.dumps({"site": "site-a", "device": "dev-1", "alarm_id": "a1"}).encode(),
            headers={"Authorization": "Bearer t0ken", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 502
        assert "Not authorized" in json.loads(refused.value.read())["error"]
        refused.value.close()


def test_a_refused_alarm_publish_becomes_a_dead_letter(broker: Broker) -> None:
    """The alarm sink as a user the ACL does not let write alarms: not passed as stored."""
    from contract.alarms import AlarmData
    from dataflows.flow import ActiveAlarms
    from gateway.connectors.alarm_sink import AlarmSink
    from gateway.observability.metrics import GatewayMetrics

    class Recorder:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def write(self, lines: list[str]) -> None:
            self.lines.extend(lines)

        def close(self) -> None:
            pass

    recorder = Recorder()
    metrics = GatewayMetrics()
    from contract import TopicScheme

    sink = AlarmSink(
        lambda: recorder,  # type: ignore[arg-type,return-value]
        broker.service("sg-dashboard", clean_session=False),
        TopicScheme("sg/v1"),
        metrics=metrics,
        gateway_id="gw-refused",
    )
    part = sink.build("alarms", 0, 1)
    try:
        part.write_batch([ActiveAlarms("site-a", "dev-1", tuple[AlarmData, ...]())])
    finally:
        part.close()
    dead = [line for line in recorder.lines if line.startswith("deadletters,")]
    assert len(dead) == 1
    assert "reason=publish_refused" in dead[0]
    assert "topic=sg/v1/site-a/dev-1/alarms/active" in dead[0]
    assert "0x87" in dead[0]
    text = metrics.render().decode()
    assert 'sensorgate_mqtt_refused_total{client="alarms",packet="puback"} 1.0' in text
    assert 'sensorgate_deadletters_total{reason="publish_refused"} 1.0' in text


# -- the gateway, end to end over TLS ------------------------------------------------------------

HOT = """
[[rules]]
id = "hot"
kind = "threshold"
metric = "temperature"
above = 30
clear = 28
"""


def test_the_gateway_over_mutual_tls_reads_telemetry_writes_alarms_and_summary(
    broker: Broker, services: ServiceEndpoints, tmp_path: Path
) -> None:
    from gateway.ops.acknowledge import publish_ack
    from tests.integration.gateway_kit import gateway_thread

    unique = uuid.uuid4().hex[:8]
    rules = tmp_path / "rules.toml"
    rules.write_text(HOT)
    settings: GatewaySettings = load_settings(
        topic_prefix="sg/v1",  # the ACL's prefix
        gateway_id=f"gw-{unique}",
        mqtt=broker.gateway_mqtt(unique),
        influx={
            "url": services.influx_url,
            "database": f"t_{unique}",
            "spill_dir": str(tmp_path / "spill"),
        },
        stream={"allowed_lateness_s": 2, "windows": ["10s"]},
        rules_file=str(rules),
        recovery_dir=str(tmp_path / "recovery"),
        epoch_interval_s=0.5,
        metrics_port=0,
    )
    alarms_topic = "sg/v1/e2e/pump/alarms"
    dashboard = Listener(broker.service("sg-dashboard"), alarms_topic, f"{alarms_topic}/active")
    start = datetime.now(UTC) - timedelta(seconds=30)
    with (
        gateway_thread(settings) as gw,
        dashboard,
        MqttLink(broker.device("e2e", "pump")) as device,
    ):
        tickets = [
            device.publish(
                "sg/v1/e2e/pump/telemetry",
                _telemetry("e2e", "pump", i + 1, value, start + timedelta(seconds=i)),
            )
            for i, value in enumerate([20.0, 21.0, 35.0])
        ]
        assert all(t.wait(10) and t.refusal is None for t in tickets)
        wait_for(
            lambda: _count(gw.query, "readings", "e2e", "pump") == 3, 60, "the readings stored"
        )
        wait_for(lambda: dashboard.payloads(alarms_topic), 60, "the alarm event")
        raised = decode_alarm(dashboard.payloads(alarms_topic)[0])
        assert raised.type.endswith(".raised.v1")
        wait_for(lambda: dashboard.payloads(f"{alarms_topic}/active"), 30, "the summary")
        summary = json.loads(dashboard.payloads(f"{alarms_topic}/active")[-1])
        assert [a["alarm_id"] for a in summary["alarms"]] == [raised.data.alarm_id]
        # The gateway reads commands: the operator's acknowledgement comes back as an event.
        publish_ack(
            mqtt=settings.mqtt.link_settings(f"op-{unique}", role="operator"),
            prefix="sg/v1",
            site="e2e",
            device="pump",
            alarm_id=raised.data.alarm_id,
            by="ops",
        )
        wait_for(
            lambda: any(
                decode_alarm(p).type.endswith(".acknowledged.v1")
                for p in dashboard.payloads(alarms_topic)
            ),
            30,
            "the acknowledged event",
        )
        assert "sensorgate_mqtt_refused_total{" not in gw.metrics.render().decode()
    # The retained summary is there for a dashboard that connects later.
    with Listener(broker.service("sg-dashboard"), f"{alarms_topic}/active") as late:
        wait_for(lambda: late.payloads(f"{alarms_topic}/active"), 20, "the retained summary")
        assert late.got[0][2], "delivered as a retained message"


def _count(query: Any, measurement: str, site: str, device: str) -> int:
    rows = query.query(
        f"SELECT count(value) FROM {measurement} WHERE site = '{site}' AND device = '{device}'"
    )
    return int(rows[0]["count"]) if rows else 0


# -- scaling down: forget the retired partitions' sessions ---------------------------------------


def _session(broker: Broker, client_id: str, group_filter: str) -> None:
    """Open a persistent MQTT 5 session subscribed to ``group_filter``, then leave."""
    link = Listener(
        broker.service(
            "sg-gateway", client_id=client_id, clean_session=False, session_expiry_s=3600
        ),
        group_filter,
    )
    with link:
        pass


def test_forget_sessions_ends_a_retired_partitions_session(broker: Broker) -> None:
    from gateway.connectors.mqtt_source import partition_client_id
    from gateway.ops.sessions import forget_sessions

    unique = uuid.uuid4().hex[:8]
    gateway = load_settings(topic_prefix="sg/v1", mqtt=broker.gateway_mqtt(unique))
    settings = gateway.mqtt
    group = f"$share/{settings.share_group}/sg/v1/+/+/telemetry"
    retired = partition_client_id(settings, 5)
    _session(broker, retired, group)  # partition 5 of a larger gateway, gone now
    live = Listener(broker.service("sg-gateway", client_id=partition_client_id(settings, 0)), group)
    topic = "sg/v1/site-b/dev-1/telemetry"
    with live, MqttLink(broker.device("site-b", "dev-1")) as device:
        for i in range(6):
            assert device.publish(topic, f"before-{i}".encode(), qos=1).wait(10)
        [result] = forget_sessions(gateway, [5])
        assert (result.partition, result.client_id, result.existed) == (5, retired, True)
        # The broker split the six between the two members; what it had queued for the
        # retired one was handed over and discarded, and counted.
        wait_for(
            lambda: len(live.payloads(topic)) + result.discarded == 6, 20, "the live member's share"
        )
        # From now on the broker queues nothing for it: the live member gets everything.
        for i in range(4):
            assert device.publish(topic, f"after-{i}".encode(), qos=1).wait(10)
        wait_for(
            lambda: sum(p.startswith(b"after-") for p in live.payloads(topic)) == 4,
            20,
            "every later message at the live member",
        )
    # The session is gone: connecting as it again finds nothing to resume.
    again = _forget_cli(broker, unique, "5")
    assert again == [{"partition": 5, "client_id": retired, "existed": False, "discarded": 0,
                      "counted_all": True}]  # fmt: skip


def _forget_cli(broker: Broker, unique: str, partitions: str) -> list[dict[str, Any]]:
    settings = load_settings(topic_prefix="sg/v1", mqtt=broker.gateway_mqtt(unique))
    done = subprocess.run(
        [*_CLI, "gateway", "forget-sessions", "--partitions", partitions, "--json"],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_forget_sessions_refuses_partitions_in_use(broker: Broker) -> None:
    unique = uuid.uuid4().hex[:8]
    settings = load_settings(
        topic_prefix="sg/v1", mqtt={**broker.gateway_mqtt(unique), "partitions": 4}
    )
    done = subprocess.run(
        [*_CLI, "gateway", "forget-sessions", "--partitions", "2-5"],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "[2, 3] are below mqtt.partitions (4)" in done.stderr


# -- the shipped limits ----------------------------------------------------------------------


def _directives(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            out.setdefault(key, value)
    return out


@pytest.mark.parametrize(
    "conf", [EDGE / "mosquitto.conf.example", DEPLOY / "compose" / "mosquitto" / "mosquitto.conf"]
)
def test_the_shipped_configs_bound_queues_and_packets_below_the_gateways_limit(
    conf: Path,
) -> None:
    d = _directives(conf)
    gateway = GatewaySettings()
    assert 0 < int(d["max_packet_size"]) <= gateway.mqtt.max_packet_bytes
    assert int(d["max_packet_size"]) > gateway.ingest.max_payload_bytes
    # Bounded (0 would be unlimited) and far above mosquitto's default of 1,000.
    assert int(d["max_queued_messages"]) >= 100_000
    assert int(d["max_queued_bytes"]) > 0
