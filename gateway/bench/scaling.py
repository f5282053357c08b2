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

import time
from dataclasses import dataclass

import psutil

from contract.errors import SensorGateError, ServiceError
from gateway.bench.facts import machine_facts, service_versions
from gateway.bench.influxd import Influxd
from gateway.bench.measure import ProcessTree
from gateway.bench.peers import wait_until
from gateway.bench.rounds import (
    Progress,
    default_timeout_s,
    fresh_services,
    now_utc,
    recorded_failure,
    release_and_watch,
    start_publisher,
)
from gateway.bench.scaling_cluster import (
    Cluster,
    ClusterTree,
    cluster_settings,
    cpu_of,
    free_run,
    scrape_all,
)
from gateway.bench.scaling_results import (
    ScalingReport,
    ScalingRound,
    fill_scaling_round,
    summarize_scaling,
)
from gateway.bench.workload import Workload
from gateway.localstack.services import LocalServices

__all__ = ["ScalingOptions", "run_scaling"]


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
        return self.timeout_s or default_timeout_s(self.workload.total)


def run_scaling(options: ScalingOptions, progress: Progress = lambda _m: None) -> ScalingReport:
    """Run every round of every process count; failures go in the report, not raised."""
    t0 = time.monotonic()
    report = ScalingReport(
        started_at=now_utc(),
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
    report.finished_at = now_utc()
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


def _round(
    n: int, round_no: int, options: ScalingOptions, tag: str, progress: Progress
) -> ScalingRound:
    workload = options.workload
    result = ScalingRound(n, round_no, expected=workload.total)
    with recorded_failure(result), fresh_services() as (local, influxd):
        settings = cluster_settings(
            local.endpoints, local.workdir, workload, options.storage_only, free_run(n)
        )
        cluster = Cluster(n, settings, local.workdir, options.workers)
        try:
            if not wait_until(cluster.ready, 120.0, 0.25):
                raise ServiceError(f"the cluster was not ready within 120 s:\n{cluster.tail()}")
            progress(f"{tag}: {n} process(es) ready")
            _burst(result, cluster, local, influxd, options, tag, progress)
        finally:
            cluster.stop()
    return result


def _burst(
    result: ScalingRound,
    cluster: Cluster,
    local: LocalServices,
    influxd: Influxd,
    options: ScalingOptions,
    tag: str,
    progress: Progress,
) -> None:
    assert local.influxd is not None
    assert local.mosquitto is not None
    workload, n = options.workload, cluster.n
    publisher = start_publisher(workload, local.endpoints, local.workdir)
    try:
        ready = publisher.wait_ready(300.0)
        progress(f"{tag}: publishing {workload.total:,} readings in {ready['messages']:,} messages")
        tree = ClusterTree(cluster.gateway_pids())
        idle = _idle_shares(tree, options.idle_s, tag, progress)
        # Supervisor and broker: to the end of the wait (they do next to nothing after).
        others = _OthersCpu(psutil.Process(cluster.proc.pid), ProcessTree(local.mosquitto.pid))
        before = scrape_all(cluster.port, n)

        def claimed() -> float | None:
            try:
                return sum(
                    float(s.get("written:readings", 0.0)) for s in scrape_all(cluster.port, n)
                )
            except (SensorGateError, ValueError):
                return None

        start, completion = release_and_watch(
            influxd, ProcessTree(local.influxd.pid), tree, claimed, publisher,
            expected=workload.total, limits=options,
        )  # fmt: skip
        result.supervisor_cpu_s, result.mosquitto_cpu_s = others.used()
        done = publisher.wait_done(max(60.0, options.burst_timeout_s))
    finally:
        publisher.stop()
    after = scrape_all(cluster.port, n)
    result.stored = influxd.count_readings()
    fill_scaling_round(result, start, completion, done, tree.by_total, (before, after), idle)


class _OthersCpu:
    """The supervisor's and mosquitto's CPU from now to :meth:`used`."""

    def __init__(self, supervisor: psutil.Process, mosquitto: ProcessTree) -> None:
        self.supervisor, self.mosquitto = supervisor, mosquitto
        self.sup0, self.mosq0 = cpu_of(supervisor), mosquitto.cpu_seconds()

    def used(self) -> tuple[float, float]:
        return (
            round(cpu_of(self.supervisor) - self.sup0, 3),
            round(self.mosquitto.cpu_seconds() - self.mosq0, 3),
        )


def _idle_shares(tree: ClusterTree, seconds: float, tag: str, progress: Progress) -> list[float]:
    """Return each process's share of one core over ``seconds`` without traffic."""
    if seconds <= 0:
        return []
    t0, cpu0 = time.monotonic(), [cpu_of(p) for p in tree.procs]
    time.sleep(seconds)
    span = time.monotonic() - t0
    idle = [round((cpu_of(p) - c) / span, 4) for p, c in zip(tree.procs, cpu0, strict=True)]
    progress(
        f"{tag}: idle CPU "
        + ", ".join(f"p{i} {share:.1%}" for i, share in enumerate(idle))
        + " of a core"
    )
    return idle
