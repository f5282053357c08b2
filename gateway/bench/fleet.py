"""Run ``sensorgate bench-fleet``: per-device MQTT fleets, asyncio runner beside threads.

One case is a workload (devices x one reading every ``interval_s``) on one runner.
Each case gets a fresh mosquitto from :func:`gateway.localstack.services.start_mosquitto` on a
free loopback port (its open-file limit raised by the launcher) and runs
``sensorgate simulate --connections per-device --runner R --json`` in a child process
of its own, so that its CPU and peak RSS are its own. The child reports what it held
and measured (ramp-up, connections, queue-to-PUBACK latency, CPU share of the
schedule phase, peak RSS); the parent adds the broker's CPU over the same span.

Connections are spread over several ``127.0.0.x`` source addresses
(:data:`DEVICES_PER_SOURCE` each): one address gives about half the ephemeral port
range (~14,000 connections to one broker port) before Linux's search for a free
port slows every connect to a crawl.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from gateway.bench.facts import machine_facts, service_versions
from gateway.bench.peers import child_env
from gateway.localstack.services import start_mosquitto

__all__ = [
    "DEVICES_PER_SOURCE",
    "WORKLOADS",
    "FleetBenchOptions",
    "FleetWorkload",
    "run_bench_fleet",
]

DEVICES_PER_SOURCE = 10_000
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class FleetWorkload:
    """``devices`` devices, one reading (two metrics) every ``interval_s`` each."""

    name: str
    devices: int
    interval_s: float

    @property
    def events_per_s(self) -> float:
        """The scheduled message rate."""
        return self.devices / self.interval_s


WORKLOADS = (
    FleetWorkload("20k-every-10s", 20_000, 10.0),
    FleetWorkload("5k-every-1s", 5_000, 1.0),
)
"""The issue's two workloads."""


@dataclass(frozen=True)
class FleetBenchOptions:
    """What to run."""

    workloads: tuple[FleetWorkload, ...] = WORKLOADS
    runners: tuple[str, ...] = ("asyncio", "threads")
    duration_s: float = 60.0
    """Simulated (= wall, real time) seconds of the schedule phase of each case."""
    ramp_rate: float = 500.0
    ramp_timeout_s: float = 30.0
    case_timeout_s: float = 900.0
    housekeeping_s: float | None = None
    command: str = ""


@dataclass
class FleetBenchReport:
    """Every case of one run, with the machine it ran on."""

    options: dict[str, Any]
    machine: dict[str, Any]
    versions: dict[str, str]
    started_at: str
    cases: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {
            "benchmark": "sensorgate bench-fleet",
            "started_at": self.started_at,
            "options": self.options,
            "machine": self.machine,
            "versions": self.versions,
            "cases": self.cases,
        }


def _bind_addresses(devices: int) -> list[str]:
    count = max(1, math.ceil(devices / DEVICES_PER_SOURCE))
    return [f"127.0.0.{i + 1}" for i in range(count)]


def _argv(options: FleetBenchOptions, workload: FleetWorkload, runner: str, port: int) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "simulators.cli",
        "simulate",
        "--connections",
        "per-device",
        "--runner",
        runner,
        "--devices",
        str(workload.devices),
        "--interval",
        str(workload.interval_s),
        "--duration",
        str(options.duration_s),
        "--metrics",
        "temperature,humidity",
        "--port",
        str(port),
        "--prefix",
        f"bench/{workload.name.replace('-', '_')}",
        "--client-id",
        f"bench-{runner}-{{device}}",
        "--ramp-rate",
        str(options.ramp_rate),
        "--ramp-timeout",
        str(options.ramp_timeout_s),
        "--bind-addresses",
        ",".join(_bind_addresses(workload.devices)),
        "--sequence-start",
        "0",
        "--drain-timeout",
        "30",
        "--progress-every",
        "10",
        "--json",
    ]
    if options.housekeeping_s is not None:
        argv += ["--housekeeping", str(options.housekeeping_s)]
    return argv


def _pump(stream: Any, prefix: str, progress: Progress) -> None:
    for line in stream:
        progress(f"  {prefix} {line.rstrip()}")


def run_case(
    options: FleetBenchOptions, workload: FleetWorkload, runner: str, progress: Progress
) -> dict[str, Any]:
    """Run one workload on one runner against a fresh broker; return its figures."""
    with tempfile.TemporaryDirectory(prefix="sg-bench-fleet-") as workdir:
        broker, port = start_mosquitto(Path(workdir))
        try:
            broker_ps = psutil.Process(broker.pid)
            limits = _fd_limit_of(broker.pid)
            cpu0 = _cpu_s(broker_ps)
            load0 = os.getloadavg()
            t0 = time.monotonic()
            child = subprocess.Popen(
                _argv(options, workload, runner, port),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=child_env(),
            )
            pump = threading.Thread(
                target=_pump, args=(child.stderr, f"[{runner}]", progress), daemon=True
            )
            pump.start()
            try:
                out, _ = child.communicate(timeout=options.case_timeout_s)
            except subprocess.TimeoutExpired:
                child.kill()
                out, _ = child.communicate()
            pump.join(5)
            wall = time.monotonic() - t0
            load1 = os.getloadavg()
            broker_cpu = _cpu_s(broker_ps) - cpu0
            broker_rss = broker_ps.memory_info().rss
        finally:
            broker.stop()
    try:
        doc: dict[str, Any] = json.loads(out[out.index("{") :]) if "{" in out else {}
    except json.JSONDecodeError:
        doc = {}
    if not doc:
        doc = {"error": f"no report (exit code {child.returncode})"}
    return {
        "workload": workload.name,
        "devices": workload.devices,
        "interval_s": workload.interval_s,
        "target_events_per_s": workload.events_per_s,
        "runner": runner,
        "exit_code": child.returncode,
        "case_wall_s": round(wall, 1),
        # Other work on the machine takes CPU from both the simulator and the broker.
        "load_average": {"start": _rounded(load0), "end": _rounded(load1)},
        "broker": {
            "cpu_s": round(broker_cpu, 2),
            "cpu_share_of_case": round(broker_cpu / wall, 3) if wall else None,
            "rss_bytes_at_end": broker_rss,
            "fd_limit": limits,
        },
        "result": doc,
    }


def _rounded(values: tuple[float, ...]) -> list[float]:
    return [round(v, 2) for v in values]


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def _fd_limit_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        pass
    return None


def run_bench_fleet(options: FleetBenchOptions, progress: Progress) -> FleetBenchReport:
    """Run every workload on every runner, one after the other; return the report."""
    report = FleetBenchReport(
        options={
            "workloads": [w.name for w in options.workloads],
            "runners": list(options.runners),
            "duration_s": options.duration_s,
            "ramp_rate": options.ramp_rate,
            "ramp_timeout_s": options.ramp_timeout_s,
            "housekeeping_s": options.housekeeping_s,
            "command": options.command,
        },
        machine=machine_facts(),
        versions={**service_versions(), **_versions("aiomqtt", "tenacity")},
        started_at=datetime.now(UTC).isoformat(),
    )
    for workload in options.workloads:
        for runner in options.runners:
            progress(
                f"{workload.name}: {workload.devices:,} devices x 1 reading every"
                f" {workload.interval_s:g} s, runner {runner} ..."
            )
            case = run_case(options, workload, runner, progress)
            report.cases.append(case)
            result = case["result"]
            conn = result.get("connections") or {}
            progress(
                f"{workload.name} / {runner}: held {conn.get('at_end')} of {workload.devices:,},"
                f" exit {case['exit_code']}"
            )
    return report


def _versions(*names: str) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
