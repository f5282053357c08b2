"""The peers of ``sensorgate bench``: what a user could run instead of SensorGate.

Each peer is started for one round against fresh services (its own mosquitto and
influxd), as a black box in its own process, and is ready when it can take the burst:

=====================  ====================================================================
``sensorgate``         the gateway with its default rules (windows, adaptive detector,
                       deadman, offline); ready when ``GET /healthz`` answers 200
``sensorgate-storage`` the gateway with ``deploy/rules/none.toml``: raw readings and
                       windows, no detection
``nodered``            Node-RED 4 with ``node-red-contrib-influxdb`` (:mod:`.nodered`);
                       ready when a probe message has gone through its flow
``naive``              paho ``on_message`` + one HTTP write per message
                       (:mod:`.naive_peer`); ready when the broker granted its subscription
``influxd``            influxd's own ceiling: pre-rendered points posted straight to it
                       (:mod:`.influx_ceiling`); no MQTT, no process of its own
=====================  ====================================================================
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import gateway
from contract.errors import SensorGateError, ServiceError
from edge.mqtt import MqttLink, MqttSettings
from gateway.bench import nodered, storage
from gateway.bench.influxd import Influxd
from gateway.bench.workload import Workload
from gateway.localstack.services import ManagedProcess, ServiceEndpoints, free_port
from gateway.settings import GatewaySettings, load_settings, settings_env

__all__ = [
    "PEERS",
    "PROJECT_ROOT",
    "Peer",
    "RoundEnv",
    "RunningPeer",
    "child_env",
    "gateway_argv",
    "gateway_settings",
    "make_peers",
    "start_gateway",
    "wait_until",
]

PROJECT_ROOT = Path(gateway.__file__).resolve().parents[1]
"""The tree this code was imported from: child processes import the same code."""
NO_RULES = PROJECT_ROOT / "deploy" / "rules" / "none.toml"
PEERS = ("sensorgate", "sensorgate-storage", "nodered", "naive", "influxd")
"""Every peer, in the order they run within a round."""


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return an environment whose Python imports this tree first (not another install)."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + path if path else "")
    env.update(extra or {})
    return env


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes; return whether it held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()


@dataclass(frozen=True, slots=True)
class RoundEnv:
    """What a peer gets for one round: fresh services and a throwaway directory."""

    endpoints: ServiceEndpoints
    influxd: Influxd
    workdir: Path
    workload: Workload

    @property
    def influx_port(self) -> int:
        """The HTTP port of influxd."""
        return int(self.endpoints.influx_url.rsplit(":", 1)[1])


@dataclass
class RunningPeer:
    """A started peer process."""

    proc: ManagedProcess
    claimed: Callable[[], float | None] | None = None
    """The peer's own count of stored readings, where it exposes one."""
    metrics_port: int | None = None
    """The gateway's ``/metrics`` port (sensorgate peers)."""
    stop_timeout_s: float = 20.0
    settings: GatewaySettings | None = None
    """The gateway's settings (sensorgate peers): windows, lateness, MQTT identity."""
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        """The peer's root process."""
        return self.proc.pid

    def stop(self) -> None:
        """Stop the peer (SIGTERM, then SIGKILL)."""
        self.proc.stop(timeout=self.stop_timeout_s)


class Peer:
    """A peer definition: how to prepare it once and start it for a round."""

    name: str = ""
    label: str = ""
    is_ceiling = False
    measures_latency = False

    def prepare(self, progress: Callable[[str], None]) -> dict[str, str]:
        """Check or install what the peer needs, once per run; return its versions."""
        return {}

    def start(self, env: RoundEnv) -> RunningPeer:
        """Start the peer against ``env``'s services and wait until it is ready."""
        raise NotImplementedError


def _require_alive(proc: ManagedProcess, what: str) -> None:
    if not proc.alive():
        raise ServiceError(
            f"{proc.name} exited (code {proc.proc.returncode}) before {what}."
            f" Its log ({proc.log_path}):\n{proc.log_tail()}"
        )


class SensorGatePeer(Peer):
    """The gateway, run as a black box: ``python -m gateway.cli gateway run``."""

    measures_latency = True

    def __init__(self, name: str, rules_file: Path | None, label: str) -> None:
        self.name = name
        self.rules_file = rules_file
        self.label = label

    def prepare(self, progress: Callable[[str], None]) -> dict[str, str]:
        """Check the rules file exists."""
        if self.rules_file is not None and not self.rules_file.is_file():
            raise ServiceError(f"{self.name}: the rules file {self.rules_file} does not exist")
        return {}

    def start(self, env: RoundEnv) -> RunningPeer:
        """Start the gateway; ready when ``/healthz`` answers 200."""
        return start_gateway(
            self.name, gateway_settings(env, rules_file=self.rules_file), env.workdir
        )


def gateway_settings(
    env: RoundEnv, *, rules_file: Path | None, **overrides: Any
) -> GatewaySettings:
    """Return the gateway's settings for ``env``'s services (a fresh metrics port)."""
    ep = env.endpoints
    # Recovery stays on, as by default, in this round's throwaway folder.
    overrides.setdefault("recovery_dir", env.workdir / "recovery")
    return load_settings(
        topic_prefix=env.workload.topic_prefix,
        mqtt={"host": ep.mqtt_host, "port": ep.mqtt_port},
        influx={
            "url": ep.influx_url,
            "database": env.influxd.database,
            "spill_dir": str(env.workdir / "spill"),
        },
        metrics_port=free_port(),
        rules_file=rules_file,
        **overrides,
    )


# Run the gateway with SIGINT ignored from the start, as ``cmd &`` in a script starts it:
# the disposition survives exec, and the process keeps its pid.
_IGNORING_SIGINT = (
    "import os, signal, sys;"
    " signal.signal(signal.SIGINT, signal.SIG_IGN);"
    " os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def gateway_argv(*, ignore_sigint: bool = False) -> list[str]:
    """Return the gateway's command line (``python -m gateway.cli gateway run``)."""
    run = ["-m", "gateway.cli", "gateway", "run"]
    if ignore_sigint:
        return [sys.executable, "-c", _IGNORING_SIGINT, *run]
    return [sys.executable, *run]


def start_gateway(
    name: str,
    settings: GatewaySettings,
    workdir: Path,
    *,
    ignore_sigint: bool = False,
    ready_timeout_s: float = 90.0,
) -> RunningPeer:
    """Start ``python -m gateway.cli gateway run``; return it once ``/healthz`` answers 200."""
    port = settings.metrics_port
    proc = ManagedProcess(
        name,
        gateway_argv(ignore_sigint=ignore_sigint),
        workdir / f"{name}.log",
        env=child_env(settings_env(settings)),
    )
    url = f"http://127.0.0.1:{port}/healthz"

    def healthy() -> bool:
        _require_alive(proc, "answering /healthz")
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    if not wait_until(healthy, ready_timeout_s, 0.2):
        proc.stop()
        raise ServiceError(
            f"{name} did not answer 200 on {url} within {ready_timeout_s:.0f} s:\n{proc.log_tail()}"
        )

    def claimed() -> float | None:
        try:
            return storage.scrape(port).get("written:readings")
        except (SensorGateError, ValueError):
            return None

    return RunningPeer(proc, claimed=claimed, metrics_port=port, settings=settings)


class NaivePeer(Peer):
    """paho ``on_message`` + one HTTP write per message (:mod:`gateway.bench.naive_peer`)."""

    name = "naive"
    label = "naive script (paho + one HTTP write per message)"

    def start(self, env: RoundEnv) -> RunningPeer:
        """Start the script; ready once the broker granted its subscription."""
        ready = env.workdir / "naive.ready"
        topic = f"{env.workload.topic_prefix}/+/+/telemetry"
        argv = [
            sys.executable,
            "-m",
            "gateway.bench.naive_peer",
            "--host",
            env.endpoints.mqtt_host,
            "--port",
            str(env.endpoints.mqtt_port),
            "--topic",
            topic,
            "--influx-url",
            env.endpoints.influx_url,
            "--database",
            env.influxd.database,
            "--ready-file",
            str(ready),
        ]
        proc = ManagedProcess("naive", argv, env.workdir / "naive.log", env=child_env())

        def subscribed() -> bool:
            _require_alive(proc, "subscribing")
            return ready.exists()

        if not wait_until(subscribed, 30.0):
            proc.stop()
            raise ServiceError(f"the naive peer did not subscribe within 30 s:\n{proc.log_tail()}")
        return RunningPeer(proc, stop_timeout_s=10.0)


class NodeRedPeer(Peer):
    """Node-RED 4 with ``node-red-contrib-influxdb`` (:mod:`gateway.bench.nodered`)."""

    name = "nodered"
    label = "Node-RED 4 + node-red-contrib-influxdb (influxdb batch)"

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self.install: nodered.NodeRed | None = None

    def prepare(self, progress: Callable[[str], None]) -> dict[str, str]:
        """Install Node-RED into the cache folder on first use."""
        self.install = nodered.ensure_installed(self.cache_dir, progress)
        return self.install.versions()

    def start(self, env: RoundEnv) -> RunningPeer:
        """Start Node-RED; ready once a probe message has gone through the flow."""
        if self.install is None:
            raise ServiceError("the nodered peer was not prepared (prepare() installs it)")
        proc = nodered.start_node_red(
            self.install,
            env.workdir,
            mqtt_port=env.endpoints.mqtt_port,
            influx_port=env.influx_port,
            database=env.influxd.database,
            ui_port=free_port(),
            topic=f"{env.workload.topic_prefix}/+/+/telemetry",
        )
        try:
            _probe_until_written(env, proc)
        except BaseException:
            proc.stop()
            raise
        return RunningPeer(proc, stop_timeout_s=10.0)


def _probe_until_written(env: RoundEnv, proc: ManagedProcess, timeout_s: float = 60.0) -> None:
    """Publish a telemetry event without readings until the flow writes it to influxd.

    The flow turns it into an empty write request: influxd counts the request and
    stores nothing, so the probe proves the subscription without touching the count.
    """
    probe = json.dumps(
        {
            "specversion": "1.0",
            "id": "bench-probe",
            "source": "/sg/_probe/probe",
            "type": "io.sensorgate.telemetry.reported.v1",
            "time": "2026-01-01T00:00:00Z",
            "data": {"site": "_probe", "device": "probe", "sequence": 0, "readings": []},
        }
    )
    topic = f"{env.workload.topic_prefix}/_probe/probe/telemetry"
    before = env.influxd.write_stats().write_req
    link = MqttLink(MqttSettings(host=env.endpoints.mqtt_host, port=env.endpoints.mqtt_port))
    link.start(fail_fast=True)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            _require_alive(proc, "its flow took a probe message")
            link.publish(topic, probe.encode(), qos=1)
            if wait_until(lambda: env.influxd.write_stats().write_req > before, 0.5, 0.05):
                return
    finally:
        link.stop()
    raise ServiceError(
        f"Node-RED's flow did not write a probe message within {timeout_s:.0f} s"
        f" (is its MQTT client connected?). Its log:\n{proc.log_tail()}"
    )


class InfluxCeilingPeer(Peer):
    """influxd alone: the most any peer could store (:mod:`gateway.bench.influx_ceiling`)."""

    name = "influxd"
    label = "influxd ceiling (pre-rendered points, 5,000 per batch, 2 connections)"
    is_ceiling = True


def make_peers(names: list[str], *, nodered_cache: Path) -> list[Peer]:
    """Return the peers called ``names`` (in the order given)."""
    out: list[Peer] = []
    for name in names:
        if name == "sensorgate":
            out.append(SensorGatePeer(name, None, "SensorGate, default rules"))
        elif name == "sensorgate-storage":
            out.append(SensorGatePeer(name, NO_RULES, "SensorGate, storage only (none.toml)"))
        elif name == "nodered":
            out.append(NodeRedPeer(nodered_cache))
        elif name == "naive":
            out.append(NaivePeer())
        elif name == "influxd":
            out.append(InfluxCeilingPeer())
        else:
            raise SensorGateError(f"unknown peer {name!r}; the peers are {', '.join(PEERS)}")
    return out
