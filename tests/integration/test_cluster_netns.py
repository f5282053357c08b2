"""A Bytewax cluster across hosts: each gateway process in its own network namespace.

One module-wide LAN (:mod:`tests.integration.netns`): mosquitto and influxd in the
``svc`` namespace at 198.18.0.1, gateway process ``i`` in namespace ``gw{i}`` at
198.18.0.1{i}, joined by a bridge; Bytewax's cluster traffic (``-a``) and the MQTT and
InfluxDB traffic cross veth pairs as between hosts. The test itself talks to the
services from inside ``svc``. Every test has its own topic prefix, share group, MQTT
client ids, database and recovery directory.

Shown here:
- a 2-process cluster started by ``sensorgate cluster`` stores exactly the aggregates
  computed from the published data; each process read its own MQTT partition (one per
  worker by default) and every message was decoded once, in the process holding its
  device's shard;
- SIGKILL of one of 3 processes under load: the others end on their own, the supervisor
  starts all 3 again, and the cluster resumes from recovery: every reading stored, one
  raise per alarm;
- a process started late: the others wait for it (no MQTT subscription before the
  cluster is complete), then the 3 work as one.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from contract import Reading, TelemetryEvent, encode
from edge.mqtt import MqttLink, MqttSettings
from gateway.influx.query import InfluxQL
from gateway.localstack.services import ManagedProcess, start_influxd, start_mosquitto
from gateway.runtime.cluster import prepare_recovery
from gateway.settings import GatewaySettings, load_settings, settings_env
from gateway.views import AlarmFilter, Views
from tests.integration.netns import Host, Lan, inside, netns_unavailable
from tests.integration.streams import (
    Published,
    assert_aggregates_equal,
    close_windows,
    in_any_order,
    past_minute,
    publish_series,
    stored_aggregates,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

CLUSTER_PORT = 2101
METRICS_PORT = 9400
"""Process i serves /metrics and /healthz on METRICS_PORT + i, in its own namespace."""


@dataclass
class LanSetup:
    lan: Lan
    svc: Host
    gateways: list[Host]
    mqtt_port: int
    influx_url: str

    def addresses(self, processes: int) -> str:
        return ";".join(f"{h.address}:{CLUSTER_PORT}" for h in self.gateways[:processes])


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LanSetup]:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    net = Lan()
    services: list[ManagedProcess] = []
    try:
        net.create()
        svc = net.add_host("svc", 1)
        gateways = [net.add_host(f"gw{i}", 10 + i) for i in range(3)]
        workdir = tmp_path_factory.mktemp("lan")
        with inside(svc.netns):  # the services are born in (and stay in) svc
            mosquitto, mqtt_port = start_mosquitto(workdir, host=svc.address, port=1883)
            services.append(mosquitto)
            influxd, influx_port = start_influxd(workdir, host=svc.address, port=8086)
            services.append(influxd)
        yield LanSetup(net, svc, gateways, mqtt_port, f"http://{svc.address}:{influx_port}")
    finally:
        for proc in services:
            proc.stop()
        net.close()


@pytest.fixture
def in_svc(lan: LanSetup) -> Iterator[None]:
    """Run the test's own client traffic from inside the services' namespace."""
    with inside(lan.svc.netns):
        yield


@pytest.fixture
def settings(lan: LanSetup, tmp_path: Path) -> GatewaySettings:
    unique = uuid.uuid4().hex[:10]
    return load_settings(
        topic_prefix=f"sgtest/{unique}",
        gateway_id=f"gw-{unique}",
        mqtt={
            "host": lan.svc.address,
            "port": lan.mqtt_port,
            "client_id_prefix": f"gw-{unique}",
            "share_group": f"g{unique}",
        },
        influx={
            "url": lan.influx_url,
            "database": f"t_{unique}",
            "aggregate_fields": ["count", "mean", "min", "max", "stddev", "first", "last"],
            "spill_dir": str(tmp_path / "spill"),
        },
        stream={"allowed_lateness_s": 2, "windows": ["10s", "1m"]},
        epoch_interval_s=0.5,
        metrics_host="0.0.0.0",  # in a gateway's namespace: its lo and eth0 only
        metrics_port=METRICS_PORT,
    )


class Gateways:
    """Reaching the gateway processes of the LAN from inside ``svc``."""

    def __init__(self, lan: LanSetup, settings: GatewaySettings, processes: int) -> None:
        self.lan = lan
        self.settings = settings
        self.processes = processes
        self._http = httpx.Client(timeout=2)

    def url(self, i: int, path: str) -> str:
        return f"http://{self.lan.gateways[i].address}:{METRICS_PORT + i}{path}"

    def health(self, i: int) -> int | None:
        try:
            return self._http.get(self.url(i, "/healthz")).status_code
        except httpx.HTTPError:
            return None

    def all_ready(self) -> bool:
        return all(self.health(i) == 200 for i in range(self.processes))

    def metric(self, i: int, name: str) -> float:
        text = self._http.get(self.url(i, "/metrics")).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith((f"{name} ", f"{name}{{"))
        )

    def pid(self, i: int) -> int:
        pids = self.lan.gateways[i].pids()
        assert len(pids) == 1, f"expected one process in {self.lan.gateways[i].netns}: {pids}"
        return pids[0]

    def close(self) -> None:
        self._http.close()


class Supervised:
    """``sensorgate cluster`` with process i in namespace gw{i}."""

    def __init__(
        self, lan: LanSetup, settings: GatewaySettings, workdir: Path, processes: int, *extra: str
    ) -> None:
        prefix = f"ip netns exec {lan.lan.name('gw')}{{i}}"
        argv = [
            sys.executable, "-m", "gateway.cli", "cluster",
            "-n", str(processes), "-a", lan.addresses(processes),
            "--exec-prefix", prefix,
            "-r", str(workdir / "recovery"),
            "--log-dir", str(workdir / "logs"),
            "--backoff", "0.5",
            "--json",
            *extra,
        ]  # fmt: skip
        env = {**os.environ, **settings_env(settings)}
        # settings_env spells out every field; left unset, the supervisor creates one
        # recovery partition per worker.
        env.pop("SENSORGATE_RECOVERY_PARTITIONS", None)
        self.log = workdir / "cluster.log"
        self.proc = ManagedProcess("cluster", argv, self.log, env=env)

    def progress(self) -> list[str]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        tag = "cluster: "
        return [line[len(tag) :] for line in text.splitlines() if line.startswith(tag)]

    def said(self, needle: str) -> bool:
        assert self.proc.alive() or self.proc.proc.returncode == 0, self.proc.log_tail(40)
        return any(needle in line for line in self.progress())

    def stop(self) -> int:
        self.proc.proc.send_signal(signal.SIGTERM)
        code = self.proc.proc.wait(120)
        self.proc.stop()
        return code


def test_two_process_cluster_across_hosts_stores_the_aggregates_computed_from_the_data(
    lan: LanSetup, settings: GatewaySettings, in_svc: None, tmp_path: Path
) -> None:
    settings = in_any_order(settings)
    cluster = Supervised(lan, settings, tmp_path, 2)
    gateways = Gateways(lan, settings, 2)
    link = MqttLink(MqttSettings(host=lan.svc.address, port=lan.mqtt_port))
    link.start()
    try:
        wait_for(gateways.all_ready, 90, "both processes subscribed and ready")
        assert cluster.said("2 MQTT partition(s)")  # the default: one per worker
        published = Published()
        devices = [f"p{i}" for i in range(10)]
        base = past_minute()
        publish_series(link, settings.topics, published, site="plant", devices=devices,
                       base=base, seconds=30)  # fmt: skip
        expected = published.expected_aggregates(10)
        q = InfluxQL(settings.influx)
        close_windows(link, settings, q, published, devices, base + timedelta(seconds=31))
        wait_for(
            lambda: (
                q.scalar(f"SELECT count(mean) FROM {q.layout.aggregates} WHERE \"window\" = '10s'")
                >= len(expected)
            ),
            60,
            "the aggregates of both processes",
        )
        assert_aggregates_equal(
            stored_aggregates(q.query(f"SELECT * FROM {q.layout.aggregates}"), "10s"), expected
        )
        q.close()
        messages = 30 * len(devices) + len(devices)  # the series and the closers
        received = [gateways.metric(i, "sensorgate_mqtt_received_messages_total") for i in (0, 1)]
        decoded = [gateways.metric(i, "sensorgate_messages_in_total") for i in (0, 1)]
        # Each process read its own share of the shared subscription off the broker...
        assert all(r > 0 for r in received), received
        assert sum(received) == messages
        # ...and each message was decoded exactly once in the whole cluster: by the
        # process that holds its device's shard, after the raw bytes crossed over.
        assert sum(decoded) == messages, decoded
    finally:
        link.stop()
        gateways.close()
        code = cluster.stop()
    assert code == 0, cluster.proc.log_tail(40)
    assert cluster.said("0 restart(s)")


class _Load:
    """Telemetry at wall-clock event times from a thread, 10 devices, every 25 ms.

    Metric ``t`` of device d is ``seq * (d + 1)``: it crosses the ``hot`` threshold
    (200) at sequence 200 / (d + 1), so the alarms are raised one after another, before
    and after the kill.
    """

    def __init__(self, link: MqttLink, settings: GatewaySettings) -> None:
        self.link = link
        self.topics = settings.topics
        self.devices = [f"k{d}" for d in range(10)]
        self.published = Published()
        self.seq = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.tickets: list = []  # type: ignore[type-arg]

    def _run(self) -> None:
        while not self.stop.is_set():
            now = datetime.now(UTC)
            for d, device in enumerate(self.devices):
                readings = [
                    Reading(sensor="probe", metric=f"m{j}", value=self.seq * 10.0 + d + j, time=now)
                    for j in range(3)
                ]
                readings.append(
                    Reading(sensor="probe", metric="t", value=float(self.seq * (d + 1)), time=now)
                )
                event = TelemetryEvent.create(
                    site="plant", device=device, sequence=self.seq, readings=readings
                )
                t_us = int(now.timestamp()) * 1_000_000 + now.microsecond
                for r in readings:
                    self.published.readings[(device, r.metric, t_us)] = r.value
                self.tickets.append(
                    self.link.publish(self.topics.telemetry("plant", device), encode(event))
                )
            self.seq += 1
            self.stop.wait(0.025)

    def __enter__(self) -> _Load:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        assert all(t.wait(30) for t in self.tickets), "the broker did not acknowledge all"


HOT = """
[[rules]]
id = "hot"
kind = "threshold"
metric = "t"
above = 200
clear = 1
"""


def test_sigkill_of_one_process_restarts_the_cluster_from_recovery_losing_nothing(
    lan: LanSetup, settings: GatewaySettings, in_svc: None, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(HOT)
    cluster = Supervised(lan, settings, tmp_path, 3, "--rules", str(rules))
    gateways = Gateways(lan, settings, 3)
    link = MqttLink(MqttSettings(host=lan.svc.address, port=lan.mqtt_port))
    link.start()
    q = InfluxQL(settings.influx)

    def stored() -> int:
        return int(q.scalar(f"SELECT count(value) FROM {q.layout.readings}"))

    def raises() -> dict[str, set[str]]:
        rows = q.query(
            f"SELECT alarm_id, device, event FROM {q.layout.alarms} WHERE \"rule\" = 'hot'"
        )
        out: dict[str, set[str]] = {}
        for r in rows:
            if r["event"] == "raised":
                out.setdefault(r["device"], set()).add(r["alarm_id"])
        return out

    try:
        wait_for(gateways.all_ready, 90, "all 3 processes subscribed and ready")
        first = [gateways.pid(i) for i in range(3)]
        with _Load(link, settings) as load:
            # Under load, with alarms already raised (so their state is in recovery).
            wait_for(lambda: stored() >= 3_000 and len(raises()) >= 3, 60, "work under way")
            os.kill(first[1], signal.SIGKILL)
            wait_for(lambda: cluster.said("generation 2: started"), 60, "the restart")
            assert cluster.said("created 3 recovery partition(s)")
            wait_for(gateways.all_ready, 90, "the restarted cluster ready")
            resumed_at = stored()
            # Keep the load on until every device has crossed its threshold and the new
            # generation has done real work.
            wait_for(lambda: load.seq > 210 and stored() > resumed_at + 3_000, 90, "work after it")
        total = len(load.published.readings)
        wait_for(lambda: stored() >= total, 90, f"all {total} readings stored")
        rows = q.query(f"SELECT value, device, metric FROM {q.layout.readings}")
        got = {(r["device"], r["metric"], r["time"] // 1000): r["value"] for r in rows}
        assert got == load.published.readings  # zero lost, nothing extra
        # One alarm per device: its state came back from recovery (a lost state would
        # raise again, under a new id, at the next hot reading); an alarm raised in the
        # epoch the kill cut short is raised again by the replay, perhaps on a later
        # reading (the dead member's queue comes back behind newer messages), under the
        # same id. One active alarm per device.
        wait_for(lambda: len(raises()) == 10, 30, "every device's raise")
        assert {d: len(ids) for d, ids in raises().items()} == {f"k{d}": 1 for d in range(10)}
        active = Views(q).active_alarms(AlarmFilter(rule="hot"))
        assert sorted(a.device for a in active) == sorted(f"k{d}" for d in range(10))
        # The others ended on their own when p1 died; the supervisor did not kill them.
        death = next(line for line in cluster.progress() if "generation 1: p1" in line)
        assert f"p1 (pid {first[1]}) killed by SIGKILL" in death
        assert "(by the supervisor)" not in death, death
        assert all(f"p{i} (pid {first[i]})" in death for i in (0, 2)), death
        assert not set(first) & {gateways.pid(i) for i in range(3)}
    finally:
        q.close()
        link.stop()
        gateways.close()
        code = cluster.stop()
    assert code == 0, cluster.proc.log_tail(40)
    assert cluster.said("2 generation(s), 1 restart(s)")


def test_a_process_started_late_is_waited_for_and_then_joins(
    lan: LanSetup, settings: GatewaySettings, in_svc: None, tmp_path: Path
) -> None:
    settings = in_any_order(settings)
    recovery = tmp_path / "recovery"
    prepare_recovery(settings, recovery, 3)
    env = {**os.environ, **settings_env(settings)}
    addresses = lan.addresses(3)

    def start(i: int) -> ManagedProcess:
        argv = [
            *lan.gateways[i].exec_prefix(), sys.executable, "-m", "gateway.cli",
            "gateway", "run", "-i", str(i), "-a", addresses, "-r", str(recovery),
        ]  # fmt: skip
        return ManagedProcess(f"gw{i}", argv, tmp_path / f"gw{i}.log", env=env)

    gateways = Gateways(lan, settings, 3)
    procs = [start(0), start(1)]
    link = MqttLink(MqttSettings(host=lan.svc.address, port=lan.mqtt_port))
    link.start()
    try:
        # Both answer /healthz, and say they are not ready: no MQTT partition exists
        # before the cluster is complete, so nothing is consumed and nothing is lost.
        wait_for(lambda: all(gateways.health(i) is not None for i in (0, 1)), 90, "p0, p1 up")
        assert [gateways.health(i) for i in (0, 1)] == [503, 503]
        assert all(p.alive() for p in procs)
        procs.append(start(2))
        wait_for(gateways.all_ready, 90, "the cluster complete with the late process")
        published = Published()
        base = past_minute()
        devices = [f"l{i}" for i in range(12)]
        publish_series(link, settings.topics, published, site="plant",
                       devices=devices, base=base, seconds=20)  # fmt: skip
        expected = published.expected_aggregates(10)
        q = InfluxQL(settings.influx)
        close_windows(link, settings, q, published, devices, base + timedelta(seconds=21))
        wait_for(
            lambda: (
                q.scalar(f"SELECT count(mean) FROM {q.layout.aggregates} WHERE \"window\" = '10s'")
                >= len(expected)
            ),
            60,
            "the aggregates",
        )
        assert_aggregates_equal(
            stored_aggregates(q.query(f"SELECT * FROM {q.layout.aggregates}"), "10s"), expected
        )
        q.close()
        received = [gateways.metric(i, "sensorgate_mqtt_received_messages_total") for i in range(3)]
        assert all(r > 0 for r in received), received  # the late one reads its share too
    finally:
        link.stop()
        gateways.close()
        for proc in procs:
            proc.proc.send_signal(signal.SIGTERM)
        codes = [proc.proc.wait(120) for proc in procs]
        for proc in procs:
            proc.stop()
    assert codes == [0, 0, 0], [p.log_tail(20) for p in procs]


def test_without_root_the_cluster_tests_skip_saying_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reason = netns_unavailable()
    assert reason is not None
    assert "need root" in reason
