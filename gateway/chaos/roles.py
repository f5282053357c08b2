"""The processes a chaos run starts, and how each is configured and started again.

mosquitto and influxd on fixed loopback ports, the gateway (recovery on, ``seq`` stored
with each reading, 10 s windows), one edge agent process and a simulated fleet; the
run's constants (database, readings per event, window) live here because every part of
the run agrees on them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from gateway.bench.peers import RunningPeer, child_env
from gateway.localstack.services import ManagedProcess, free_port
from gateway.settings import GatewaySettings, load_settings

__all__ = [
    "DATABASE",
    "PER_EVENT",
    "WINDOW",
    "Roles",
    "edge_config",
    "gateway_settings",
    "members",
    "sigkill",
    "start_edge",
    "start_fleet",
]

DATABASE = "chaos"
PER_EVENT = 50
WINDOW = "10s"


@dataclass
class Roles:
    """The running processes, replaced as faults kill and restart them."""

    gateway: RunningPeer | None = None
    mosquitto: ManagedProcess | None = None
    influxd: ManagedProcess | None = None
    edge: ManagedProcess | None = None
    fleet: ManagedProcess | None = None
    faulting: bool = False
    """A fault is being injected (a dead gateway is then expected)."""


def edge_config(
    path: Path, *, device: str, port: int, outbox: Path, interval_s: float, seed: int
) -> Path:
    """Write one edge agent's TOML config (``PER_EVENT`` simulated sensors) to ``path``."""
    sensors = "\n".join(
        f'[[sensors]]\nid = "s{i:02d}"\ndriver = "simulated"\ninterval_s = {interval_s}\n'
        f'options = {{ seed = {seed * 100 + i}, metric = "v", noise = 0.5 }}\n'
        for i in range(PER_EVENT)
    )
    path.write_text(
        f'site = "chaos"\ndevice = "{device}"\nlog_level = "WARNING"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nreconnect_min_s = 0.5\n'
        f"reconnect_max_s = 3.0\n"
        f"[batch]\nmax_readings = {PER_EVENT}\nmax_age_s = 600\n"
        f'[outbox]\npath = "{outbox}"\nmax_rate = 400\nmax_inflight = 200\n'
        f'durability = "normal"\n'
        f"[status]\nheartbeat_s = 30\n\n{sensors}"
    )
    return path


def gateway_settings(
    workdir: Path, mqtt_port: int, influx_port: int, share_group: str
) -> GatewaySettings:
    """Return the chaos gateway's settings: recovery, spill and ``seq`` on, 10 s windows."""
    return load_settings(
        mqtt={"host": "127.0.0.1", "port": mqtt_port, "share_group": share_group},
        influx={
            "url": f"http://127.0.0.1:{influx_port}",
            "database": DATABASE,
            "spill_dir": str(workdir / "spill"),
            "reading_seq": True,
        },
        stream={"windows": (WINDOW,)},
        metrics_port=free_port(),
        recovery_dir=workdir / "recovery",
    )


def start_edge(config: Path, workdir: Path) -> ManagedProcess:
    """Start the edge agent process (``sensorgate edge run``) on ``config``."""
    return ManagedProcess(
        "edge agent",
        [sys.executable, "-m", "gateway.cli", "edge", "run", "--config", str(config)],
        workdir / "edge-0.log",
        env=child_env(),
    )


def start_fleet(configs: list[Path], workdir: Path) -> ManagedProcess:
    """Start the simulated fleet: one process holding an agent per config."""
    return ManagedProcess(
        "fleet",
        [sys.executable, "-m", "gateway.chaos.fleet", *map(str, configs)],
        workdir / "fleet.log",
        env=child_env(),
    )


def sigkill(proc: ManagedProcess) -> None:
    """SIGKILL ``proc``, reap it and close its log."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    proc.proc.wait(30)
    proc.stop()  # closes its log


def members(roles: Roles) -> dict[str, int]:
    """Return the pid of every live process of the run, the driver included, by role."""
    out = {"chaos driver": os.getpid()}
    gw = roles.gateway
    if gw is not None and gw.proc.alive():
        out["gateway"] = gw.pid
    for name, proc in (
        ("mosquitto", roles.mosquitto),
        ("influxd", roles.influxd),
        ("edge agent", roles.edge),
        ("fleet (simulated agents)", roles.fleet),
    ):
        if proc is not None and proc.alive():
            out[name] = proc.pid
    return out
