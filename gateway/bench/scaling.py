"""``sensorgate bench-cluster``: one burst through 1, 2, 3 ... gateway processes.

One round is one process count N, on fresh mosquitto and influxd (loopback):

1. ``sensorgate cluster -n N`` (free loopback ports, a fresh recovery directory, the
   default rules unless ``storage_only``) is started and awaited until every process
   answers ``/healthz`` with 200;
2. the burst publisher (:mod:`gateway.bench.publisher`) renders the workload and
   connects; the CPU counters of every gateway process, the supervisor, mosquitto and
   influxd are read; the burst starts;
3. influxd's write statistics are polled until they have been still for ``settle_s``
   (:func:`gateway.bench.measure.watch_until_stored`); every CPU figure is taken at the
   sample that saw the last point stored;
4. each process's own counters: messages its MQTT partition took from the broker,
   messages and readings it decoded (those of the devices whose shard it holds);
5. the cluster is stopped (SIGTERM: every process finishes its epoch).

Rounds alternate over the process counts (``for round: for n``). The figures that plan
cores are CPU per reading: the cluster's (all gateway processes together, per reading
stored) and each process's (per reading it decoded). On a machine with fewer cores than
processes this shows what a cluster costs and that it stores everything, not a speed-up.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from contract.errors import SensorGateError, ServiceError
from gateway.bench import storage
from gateway.bench.facts import machine_facts, service_versions
from gateway.bench.influxd import Influxd
from gateway.bench.measure import ProcessTree, take_snapshot, watch_until_stored
from gateway.bench.peers import NO_RULES, child_env, wait_until
from gateway.bench.publisher import PublisherProcess
from gateway.bench.workload import Workload
from gateway.localstack.services import LocalServices, ServiceEndpoints
from gateway.settings import GatewaySettings, load_settings, settings_env

__all__ = [
    "ProcessFigures",
    "ScalingOptions",
    "ScalingReport",
    "ScalingRound",
    "run_scaling",
    "summarize_scaling",
]

DATABASE = "bench"
RECEIVED_METRIC = "sensorgate_mqtt_received_messages_total"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ScalingOptions:
    """What to run."""

    workload: Workload
    process_counts: tuple[int, ...] = (1, 2, 3)
    rounds: int = 3
    workers: int = 1
    storage_only: bool = False
    settle_s: float = 3.0
    idle_s: float = 5.0
    """Seconds of each process's idle CPU, measured before the burst (0: skip)."""
    timeout_s: float | None = None
    command: str = ""

    @property
    def burst_timeout_s(self) -> float:
        """The longest wait for one burst (120 s + 1 s per 2,000 readings by default)."""
        return self.timeout_s or 120.0 + self.workload.total / 2_000


@dataclass
class ProcessFigures:
    """One gateway process in one round."""

    index: int
    cpu_s: float
    received_messages: int
    """Taken off the broker by this process's MQTT partition(s)."""
    decoded_messages: int
    decoded_readings: int
    """Decoded here: the devices whose shard this process holds."""
    stored: int = 0
    """Readings the whole cluster stored in the round (for the per-reading share)."""
    idle_cpu_share: float | None = None
    """Share of one core this process used while idle, before the burst."""

    @property
    def cpu_us_per_reading(self) -> float | None:
        """Return the process's CPU over the burst per reading the cluster stored (µs)."""
        if not self.stored:
            return None
        return round(self.cpu_s * 1e6 / self.stored, 2)

    @property
    def cpu_us_per_decoded_reading(self) -> float | None:
        """Return the process's CPU per reading it decoded (µs)."""
        if not self.decoded_readings:
            return None
        return round(self.cpu_s * 1e6 / self.decoded_readings, 2)

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as a JSON-ready dict."""
        return {
            **asdict(self),
            "cpu_us_per_reading": self.cpu_us_per_reading,
            "cpu_us_per_decoded_reading": self.cpu_us_per_decoded_reading,
        }


@dataclass
class ScalingRound:
    """One process count, one round."""

    processes: int
    round: int
    expected: int
    stored: int | None = None
    outcome: str = "settled"
    seconds: float | None = None
    """From the first publish to the last reading stored."""
    readings_per_s: float | None = None
    gateway_cpu_s: float | None = None
    """All gateway processes together, over the burst."""
    supervisor_cpu_s: float | None = None
    influxd_cpu_s: float | None = None
    mosquitto_cpu_s: float | None = None
    per_process: list[ProcessFigures] = field(default_factory=list)
    error: str | None = None

    @property
    def gateway_cpu_us_per_reading(self) -> float | None:
        """The cluster's CPU per reading stored (µs): the figure that plans cores."""
        if self.gateway_cpu_s is None or not self.stored:
            return None
        return round(self.gateway_cpu_s * 1e6 / self.stored, 2)

    def as_dict(self) -> dict[str, Any]:
        """Return the round as a JSON-ready dict."""
        out = asdict(self)
        out["per_process"] = [p.as_dict() for p in self.per_process]
        out["gateway_cpu_us_per_reading"] = self.gateway_cpu_us_per_reading
        return out


@dataclass
class ScalingReport:
    """Every round, the summaries per process count, and where it ran."""

    started_at: str
    command: str
    workload: dict[str, Any]
    rounds: int
    workers: int
    storage_only: bool
    process_counts: list[int]
    machine: dict[str, Any]
    versions: dict[str, str]
    results: list[ScalingRound] = field(default_factory=list)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    finished_at: str = ""
    wall_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        out = asdict(self)
        out["results"] = [r.as_dict() for r in self.results]
        return out


def _median(values: Sequence[float | None], digits: int = 2) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None}
    return {
        "median": round(statistics.median(present), digits),
        "min": round(min(present), digits),
        "max": round(max(present), digits),
    }


def summarize_scaling(results: Sequence[ScalingRound]) -> list[dict[str, Any]]:
    """Median (min, max) per process count over its rounds; the lost readings summed."""
    out = []
    for n in sorted({r.processes for r in results}):
        rounds = [r for r in results if r.processes == n]
        good = [r for r in rounds if r.error is None]
        per_process: list[dict[str, Any]] = []
        for i in range(n):
            figures = [r.per_process[i] for r in good if len(r.per_process) > i]
            per_process.append(
                {
                    "index": i,
                    "idle_cpu_share": _median([f.idle_cpu_share for f in figures], 4),
                    "cpu_us_per_reading": _median([f.cpu_us_per_reading for f in figures]),
                    "cpu_us_per_decoded_reading": _median(
                        [f.cpu_us_per_decoded_reading for f in figures]
                    ),
                    "received_share": _median(
                        [_share(f.received_messages, r, "received_messages") for f, r in
                         zip(figures, good, strict=True)]
                    ),
                    "decoded_share": _median(
                        [_share(f.decoded_readings, r, "decoded_readings") for f, r in
                         zip(figures, good, strict=True)]
                    ),
                }
            )  # fmt: skip
        out.append(
            {
                "processes": n,
                "rounds": len(rounds),
                "failed": len(rounds) - len(good),
                "lost": sum(r.expected - (r.stored or 0) for r in rounds),
                "readings_per_s": _median([r.readings_per_s for r in good]),
                "gateway_cpu_us_per_reading": _median([r.gateway_cpu_us_per_reading for r in good]),
                "influxd_cpu_us_per_reading": _median(
                    [_per_reading(r.influxd_cpu_s, r.stored) for r in good]
                ),
                "mosquitto_cpu_us_per_reading": _median(
                    [_per_reading(r.mosquitto_cpu_s, r.stored) for r in good]
                ),
                "per_process": per_process,
            }
        )
    return out


def _share(value: int, r: ScalingRound, name: str) -> float | None:
    total = sum(getattr(p, name) for p in r.per_process)
    return round(value / total, 3) if total else None


def _per_reading(cpu_s: float | None, stored: int | None) -> float | None:
    return None if cpu_s is None or not stored else cpu_s * 1e6 / stored


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_scaling(options: ScalingOptions, progress: Progress = lambda _m: None) -> ScalingReport:
    """Run every round of every process count; failures go in the report, not raised."""
    t0 = time.monotonic()
    report = ScalingReport(
        started_at=_now(),
        command=options.command,
        workload=options.workload.as_dict(),
        rounds=options.rounds,
        workers=options.workers,
        storage_only=options.storage_only,
        process_counts=list(options.process_counts),
        machine=machine_facts(),
        versions=service_versions(),
    )
    for round_no in range(1, options.rounds + 1):
        for n in options.process_counts:
            tag = f"round {round_no}/{options.rounds} · {n} process(es)"
            result = _round(n, round_no, options, tag, progress)
            report.results.append(result)
            progress(f"{tag}: {_one_line(result)}")
    report.summaries = summarize_scaling(report.results)
    report.finished_at = _now()
    report.wall_s = round(time.monotonic() - t0, 1)
    return report


def _one_line(r: ScalingRound) -> str:
    if r.error:
        return f"FAILED: {r.error.splitlines()[0]}"
    parts = [f"stored {r.stored:,}/{r.expected:,}"]
    if r.readings_per_s:
        parts.append(f"{r.readings_per_s:,.0f} readings/s")
    if r.gateway_cpu_us_per_reading is not None:
        parts.append(f"gateway CPU {r.gateway_cpu_us_per_reading:.2f} µs/reading")
    per = ", ".join(
        f"p{p.index} {p.cpu_s:.1f} s ({p.received_messages:,} msgs in, "
        f"{p.decoded_readings:,} readings decoded)"
        for p in r.per_process
    )
    return "; ".join([*parts, per]) if per else "; ".join(parts)


class _ClusterTree(ProcessTree):
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

    def cpu_of(self, proc: psutil.Process) -> float:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system)

    def cpu_seconds(self) -> float:
        each = [self.cpu_of(p) for p in self.procs]
        total = sum(each)
        self.by_total[total] = each
        return total

    def rss_bytes(self) -> int:
        total = 0
        for proc in self.procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def alive(self) -> bool:
        try:
            return all(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in self.procs)
        except psutil.Error:
            return False


def _settings(endpoints: ServiceEndpoints, workdir: Path, options: ScalingOptions,
              metrics_port: int) -> GatewaySettings:  # fmt: skip
    return load_settings(
        topic_prefix=options.workload.topic_prefix,
        mqtt={"host": endpoints.mqtt_host, "port": endpoints.mqtt_port},
        influx={
            "url": endpoints.influx_url,
            "database": DATABASE,
            "spill_dir": str(workdir / "spill"),
        },
        metrics_port=metrics_port,
        rules_file=NO_RULES if options.storage_only else None,
    )


def _free_run(n: int) -> int:
    """Return a port p such that p .. p+n-1 are free on loopback (below the ephemeral range)."""
    from gateway.runtime.cluster import free_listen_ports

    return free_listen_ports(n, consecutive=True)[0]


class _Cluster:
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
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def ready(self) -> bool:
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
        children = psutil.Process(self.proc.pid).children()
        if len(children) != self.n:
            raise ServiceError(f"expected {self.n} gateway processes; found {len(children)}")
        # Started in process order: p0 first.
        return [c.pid for c in sorted(children, key=lambda c: c.create_time())]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def _scrape_all(port: int, n: int) -> list[dict[str, Any]]:
    return [storage.scrape(port + i) for i in range(n)]


def _round(
    n: int, round_no: int, options: ScalingOptions, tag: str, progress: Progress
) -> ScalingRound:
    workload = options.workload
    result = ScalingRound(n, round_no, expected=workload.total)
    try:
        with LocalServices() as local, Influxd(local.endpoints.influx_url, DATABASE) as influxd:
            influxd.create_database()
            assert local.influxd is not None
            assert local.mosquitto is not None
            settings = _settings(local.endpoints, local.workdir, options, _free_run(n))
            cluster = _Cluster(n, settings, local.workdir, options.workers)
            try:
                if not wait_until(cluster.ready, 120.0, 0.25):
                    raise ServiceError(f"the cluster was not ready within 120 s:\n{cluster.tail()}")
                progress(f"{tag}: {n} process(es) ready")
                _burst(result, cluster, local, influxd, options, tag, progress)
            finally:
                cluster.stop()
    except (SensorGateError, psutil.Error) as exc:
        result.error = str(exc) or type(exc).__name__
        result.outcome = "failed"
    return result


def _burst(
    result: ScalingRound,
    cluster: _Cluster,
    local: LocalServices,
    influxd: Influxd,
    options: ScalingOptions,
    tag: str,
    progress: Progress,
) -> None:
    assert local.influxd is not None
    assert local.mosquitto is not None
    workload = options.workload
    n = cluster.n
    publisher = PublisherProcess(
        workload,
        host=local.endpoints.mqtt_host,
        port=local.endpoints.mqtt_port,
        log_path=local.workdir / "publisher.log",
        env=child_env(),
    )
    try:
        ready = publisher.wait_ready(300.0)
        progress(f"{tag}: publishing {workload.total:,} readings in {ready['messages']:,} messages")
        tree = _ClusterTree(cluster.gateway_pids())
        idle = _idle_shares(tree, options.idle_s)
        if idle:
            progress(
                f"{tag}: idle CPU "
                + ", ".join(f"p{i} {share:.1%}" for i, share in enumerate(idle))
                + " of a core"
            )
        supervisor = psutil.Process(cluster.proc.pid)
        mosquitto = ProcessTree(local.mosquitto.pid)
        influxd_tree = ProcessTree(local.influxd.pid)
        before = _scrape_all(cluster.port, n)
        sup0, mosq0 = _cpu(supervisor), mosquitto.cpu_seconds()

        def claimed() -> float | None:
            try:
                return sum(
                    float(s.get("written:readings", 0.0)) for s in _scrape_all(cluster.port, n)
                )
            except (SensorGateError, ValueError):
                return None

        start = take_snapshot(influxd, influxd_tree, tree, claimed)
        publisher.go()
        completion = watch_until_stored(
            influxd,
            influxd_tree,
            tree,
            start=start,
            expected=workload.total,
            settle_s=options.settle_s,
            timeout_s=options.burst_timeout_s,
            claimed=claimed,
        )
        sup1, mosq1 = _cpu(supervisor), mosquitto.cpu_seconds()
        done = publisher.wait_done(max(60.0, options.burst_timeout_s))
    finally:
        publisher.stop()
    after = _scrape_all(cluster.port, n)
    result.outcome = completion.outcome
    result.stored = influxd.count_readings()
    end = completion.end
    if end is not completion.start:
        result.seconds = round(end.t - float(done["first_publish"]), 3)
        if result.seconds > 0:
            result.readings_per_s = round(min(result.stored, workload.total) / result.seconds, 1)
        result.influxd_cpu_s = round(end.influxd_cpu_s - start.influxd_cpu_s, 3)
        result.gateway_cpu_s = round((end.peer_cpu_s or 0.0) - (start.peer_cpu_s or 0.0), 3)
    each0 = tree.by_total.get(start.peer_cpu_s or 0.0, [0.0] * n)
    each1 = tree.by_total.get(end.peer_cpu_s or 0.0, each0)
    # Supervisor and broker: to the end of the wait (they do next to nothing after).
    result.supervisor_cpu_s = round(sup1 - sup0, 3)
    result.mosquitto_cpu_s = round(mosq1 - mosq0, 3)
    for i in range(n):
        result.per_process.append(
            ProcessFigures(
                index=i,
                cpu_s=round(each1[i] - each0[i], 3),
                received_messages=int(_delta(after[i], before[i], RECEIVED_METRIC)),
                decoded_messages=int(_delta(after[i], before[i], "sensorgate_messages_in_total")),
                decoded_readings=int(_delta(after[i], before[i], "sensorgate_readings_in_total")),
                stored=result.stored or 0,
                idle_cpu_share=idle[i] if idle else None,
            )
        )
    if not done.get("all_acknowledged", False):
        result.error = "the broker did not acknowledge every message of the burst"
    if completion.outcome != "settled":
        result.error = f"the burst did not settle: {completion.outcome}"


def _idle_shares(tree: _ClusterTree, seconds: float) -> list[float]:
    """Return each process's share of one core over ``seconds`` without traffic."""
    if seconds <= 0:
        return []
    t0, cpu0 = time.monotonic(), [tree.cpu_of(p) for p in tree.procs]
    time.sleep(seconds)
    span = time.monotonic() - t0
    return [round((tree.cpu_of(p) - c) / span, 4) for p, c in zip(tree.procs, cpu0, strict=True)]


def _delta(after: dict[str, Any], before: dict[str, Any], name: str) -> float:
    return float(after.get(name, 0.0)) - float(before.get(name, 0.0))


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)
