"""``sensorgate cluster -n N`` on loopback for one round of ``sensorgate bench-cluster``.

Its settings, its processes (started, awaited healthy, stopped), their metrics, and a
:class:`~gateway.bench.measure.ProcessTree` over all the gateway processes that keeps
each one's CPU at every sample.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from contract.errors import ServiceError
from gateway.bench import storage
from gateway.bench.measure import ProcessTree
from gateway.bench.peers import NO_RULES, child_env
from gateway.bench.rounds import DATABASE
from gateway.bench.workload import Workload
from gateway.localstack.services import ServiceEndpoints
from gateway.settings import GatewaySettings, load_settings, settings_env

__all__ = ["Cluster", "ClusterTree", "cluster_settings", "cpu_of", "free_run", "scrape_all"]


class ClusterTree(ProcessTree):
    """The gateway processes of a cluster, measured one by one at every sample.

    :func:`watch_until_stored` calls :meth:`cpu_seconds` once per sample; the breakdown
    by process is kept under the total it returned, to be looked up for the sample
    that saw the last point stored. (A :class:`ProcessTree` rooted at p0, for the
    measuring functions; every method covers all the processes.)
    """

    def __init__(self, pids: list[int]) -> None:
        super().__init__(pids[0])
        self.procs = [psutil.Process(pid) for pid in pids]
        self.by_total: dict[float, list[float]] = {}

    def _members(self) -> list[psutil.Process]:
        return self.procs

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the gateway processes; kept by total as well."""
        each = [cpu_of(p) for p in self.procs]
        total = sum(each)
        self.by_total[total] = each
        return total

    def alive(self) -> bool:
        """Whether every gateway process still runs."""
        try:
            return all(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in self.procs)
        except psutil.Error:
            return False


def cluster_settings(
    endpoints: ServiceEndpoints,
    workdir: Path,
    workload: Workload,
    storage_only: bool,
    metrics_port: int,
) -> GatewaySettings:
    """Return the settings every process of the cluster starts from."""
    return load_settings(
        topic_prefix=workload.topic_prefix,
        mqtt={"host": endpoints.mqtt_host, "port": endpoints.mqtt_port},
        influx={
            "url": endpoints.influx_url,
            "database": DATABASE,
            "spill_dir": str(workdir / "spill"),
        },
        metrics_port=metrics_port,
        rules_file=NO_RULES if storage_only else None,
    )


def free_run(n: int) -> int:
    """Return a port p such that p .. p+n-1 are free on loopback (below the ephemeral range)."""
    from gateway.runtime.cluster import free_listen_ports

    return free_listen_ports(n, consecutive=True)[0]


class Cluster:
    """``sensorgate cluster -n N`` on loopback for one round."""

    def __init__(self, n: int, settings: GatewaySettings, workdir: Path, workers: int) -> None:
        env = child_env(settings_env(settings))
        env.pop("SENSORGATE_RECOVERY_PARTITIONS", None)
        argv = [
            sys.executable, "-m", "gateway.cli", "cluster", "-n", str(n), "-w", str(workers),
            "-r", str(workdir / "recovery"), "--log-dir", str(workdir / "gateways"),
            "--max-restarts", "0",
        ]  # fmt: skip
        self.n = n
        self.port = settings.metrics_port
        self.log_path = workdir / "cluster.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )

    def tail(self, lines: int = 20) -> str:
        """Return the last lines of the cluster's log."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def ready(self) -> bool:
        """Whether every process answers ``/healthz`` with 200 (raise if the cluster exited)."""
        import httpx

        if self.proc.poll() is not None:
            raise ServiceError(f"sensorgate cluster exited early:\n{self.tail()}")
        for i in range(self.n):
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{self.port + i}/healthz", timeout=1).status_code
                    != 200
                ):
                    return False
            except httpx.HTTPError:
                return False
        return True

    def gateway_pids(self) -> list[int]:
        """Return the gateway processes' pids, p0 first."""
        children = psutil.Process(self.proc.pid).children()
        if len(children) != self.n:
            raise ServiceError(f"expected {self.n} gateway processes; found {len(children)}")
        # Started in process order: p0 first.
        return [c.pid for c in sorted(children, key=lambda c: c.create_time())]

    def stop(self) -> None:
        """SIGTERM the supervisor (every process finishes its epoch); kill it after 120 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def scrape_all(port: int, n: int) -> list[dict[str, Any]]:
    """Scrape the metrics of each of the ``n`` processes (ports ``port`` .. ``port+n-1``)."""
    return [storage.scrape(port + i) for i in range(n)]


def cpu_of(proc: psutil.Process) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)
