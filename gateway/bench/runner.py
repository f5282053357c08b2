"""Run ``sensorgate bench``: rounds over the peers, each against fresh services.

Rounds alternate between peers (``for round in rounds: for peer in peers``), so a
machine that gets busier or quieter during the run shifts every peer alike. One round of
one peer:

1. fresh mosquitto and influxd (:class:`~gateway.localstack.services.LocalServices`), database
   ``bench``;
2. the peer, started and awaited until ready (:mod:`gateway.bench.peers`);
3. the publisher process renders the whole burst and connects; the CPU counters are
   read; the burst starts;
4. influxd's write statistics are polled until they have been still for a few seconds
   (:func:`gateway.bench.measure.watch_until_stored`); the readings are counted once;
5. for the ``sensorgate`` peers, the sampling goes on until the gateway has written the
   burst's aggregates (:mod:`gateway.bench.aggregates`): the CPU figures cover them;
6. for the ``sensorgate`` peers, a paced phase at half the measured rate gives the
   gateway's p50/p99 latency from its own histograms (:mod:`gateway.bench.storage`).

The influxd ceiling replaces steps 2-4 with posting pre-rendered points straight to it.
After the rounds, an idle gateway's CPU share is measured on its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from contract.errors import SensorGateError
from gateway.bench import storage
from gateway.bench.aggregates import plan_aggregates, watch_aggregates
from gateway.bench.facts import machine_facts, service_versions
from gateway.bench.influx_ceiling import post_batches, render_batches
from gateway.bench.measure import (
    Completion,
    ProcessTree,
    Snapshot,
    idle_cpu_share,
)
from gateway.bench.peers import Peer, RoundEnv, RunningPeer, SensorGatePeer, child_env, make_peers
from gateway.bench.results import BenchReport, RoundResult, summarize
from gateway.bench.round_figures import fill_aggregate_figures, fill_burst_figures
from gateway.bench.rounds import (
    DATABASE,
    Progress,
    burst_until_stored,
    default_timeout_s,
    fresh_services,
    now_utc,
    recorded_failure,
    round_line,
    start_publisher,
)
from gateway.bench.workload import Workload
from gateway.influx.layout import StorageLayout

__all__ = ["BenchOptions", "run_bench"]


@dataclass(frozen=True)
class BenchOptions:
    """What to run."""

    scenario: str
    workload: Workload
    peers: tuple[str, ...]
    rounds: int
    nodered_cache: Path
    command: str = ""
    latency: bool = True
    """The paced latency phase for the sensorgate peers."""
    latency_s: float = 60.0
    """Seconds of the paced phase: a minute holds one close of the default 1 min windows."""
    latency_fleet: str = "burst"
    """``burst``: the paced phase continues the burst's devices; ``new``: a new fleet."""
    idle_s: float = 30.0
    """Seconds of idle gateway CPU to measure (0: skip)."""
    settle_s: float = 3.0
    timeout_s: float | None = None
    """Longest wait for one burst to be stored (default: 120 s + 1 s per 2,000 readings)."""

    @property
    def burst_timeout_s(self) -> float:
        """The longest wait for one burst."""
        return self.timeout_s or default_timeout_s(self.workload.total)


def run_bench(options: BenchOptions, progress: Progress = lambda _m: None) -> BenchReport:
    """Run every round of every peer; return the report (failures are in it, not raised)."""
    t0 = time.monotonic()
    peers = make_peers(list(options.peers), nodered_cache=options.nodered_cache)
    report = BenchReport(
        started_at=now_utc(),
        command=options.command,
        scenario=options.scenario,
        workload=options.workload.as_dict(),
        rounds=options.rounds,
        peers=list(options.peers),
        machine=machine_facts(),
        versions=service_versions(),
    )
    for peer in peers:
        report.versions.update(peer.prepare(progress))
    for round_no in range(1, options.rounds + 1):
        for peer in peers:
            tag = f"round {round_no}/{options.rounds} · {peer.name}"
            progress(f"{tag}: {peer.label}")
            if peer.is_ceiling:
                result = _ceiling_round(peer, round_no, options, tag, progress)
            else:
                result = _peer_round(peer, round_no, options, tag, progress)
            report.results.append(result)
            progress(f"{tag}: {_one_line(result)}")
    labels = {p.name: p.label for p in peers}
    report.summaries = summarize(report.results, labels)
    if options.idle_s > 0 and any(isinstance(p, SensorGatePeer) for p in peers):
        report.idle_gateway = _idle_gateway(options, progress)
    report.finished_at = now_utc()
    report.wall_s = round(time.monotonic() - t0, 1)
    return report


def _one_line(r: RoundResult) -> str:
    cpu = []
    if r.peer_cpu_s_per_m is not None:
        cpu.append(f"peer CPU {r.peer_cpu_s_per_m:.1f} s/M")
    if r.influxd_cpu_s_per_m is not None:
        cpu.append(f"influxd CPU {r.influxd_cpu_s_per_m:.1f} s/M")
    return round_line(r, cpu)


def _peer_round(
    peer: Peer, round_no: int, options: BenchOptions, tag: str, progress: Progress
) -> RoundResult:
    workload = options.workload
    result = RoundResult(peer.name, round_no, expected=workload.total)
    with recorded_failure(result), fresh_services() as (local, influxd):
        assert local.influxd is not None
        env = RoundEnv(local.endpoints, influxd, local.workdir, workload)
        running = peer.start(env)
        try:
            _burst(
                peer, running, env, ProcessTree(local.influxd.pid), result, options, tag, progress
            )
        finally:
            running.stop()
    return result


def _burst(
    peer: Peer,
    running: RunningPeer,
    env: RoundEnv,
    influxd_tree: ProcessTree,
    result: RoundResult,
    options: BenchOptions,
    tag: str,
    progress: Progress,
) -> None:
    workload = env.workload
    publisher = start_publisher(workload, env.endpoints, env.workdir)
    try:
        ready = publisher.wait_ready(300.0)
        progress(
            f"{tag}: publishing {workload.total:,} readings in {ready['messages']:,} messages"
            f" ({ready['bytes'] / 1e6:,.0f} MB, rendered in {ready['render_s']:.1f} s)"
        )
        peer_tree = ProcessTree(running.pid)
        before = storage.scrape(running.metrics_port) if running.metrics_port else {}
        start, completion, done = burst_until_stored(
            env.influxd, influxd_tree, peer_tree, running.claimed, publisher,
            expected=workload.total, limits=options, tag=tag, progress=progress,
        )  # fmt: skip
    finally:
        publisher.stop()
    layout = None if running.settings is None else StorageLayout.of(running.settings.influx)
    fill_burst_figures(result, completion, done, env.influxd.count_readings(layout))
    if completion.outcome == "peer exited":
        result.error = f"{result.error}; its log:\n{running.proc.log_tail()}"
    if running.metrics_port is not None:
        sustained = storage.sustained_rate(completion.samples)
        if sustained is not None:
            result.extras["gateway_sustained_readings_per_s"] = round(sustained, 1)
        if running.settings is not None and completion.outcome == "settled":
            _await_aggregates(
                running, env, influxd_tree, peer_tree, completion, ready, result, tag, progress
            )
        _gateway_extras(
            peer, running, env, result, (before, start, peer_tree), options, tag, progress
        )


def _await_aggregates(
    running: RunningPeer,
    env: RoundEnv,
    influxd_tree: ProcessTree,
    peer_tree: ProcessTree,
    completion: Completion,
    ready: dict[str, Any],
    result: RoundResult,
    tag: str,
    progress: Progress,
) -> None:
    """Keep measuring until the gateway has written the burst's aggregates."""
    settings = running.settings
    assert settings is not None
    assert running.metrics_port is not None
    stream = settings.stream
    plan = plan_aggregates(env.workload, int(ready["base_us"]), stream.windows)
    quiet_s = stream.allowed_lateness_s if stream.quiet_s is None else stream.quiet_s
    close_by = completion.end.t + plan.close_after_s(stream.allowed_lateness_s, quiet_s)
    port = running.metrics_port
    progress(
        f"{tag}: readings stored; waiting for {plan.expected:,} aggregates"
        f" ({', '.join(f'{n:,} x {w}' for w, n in plan.by_window.items())}; the last window"
        f" should close within {max(0.0, close_by - time.monotonic()):.0f} s)"
    )

    def written() -> float | None:
        try:
            return float(storage.scrape(port).get("written:aggregates", 0.0))
        except (SensorGateError, ValueError):
            return None

    done = watch_aggregates(
        env.influxd,
        influxd_tree,
        peer_tree,
        after=completion.last,
        written=written,
        expected=plan.expected,
        close_by=close_by,
    )
    fill_aggregate_figures(result, completion, done)
    progress(
        f"{tag}: aggregates {result.aggregates_written or 0:,}/{plan.expected:,}"
        f" ({done.outcome}) {done.end.t - completion.end.t:.1f} s after the last reading"
    )


def _gateway_extras(
    peer: Peer,
    running: RunningPeer,
    env: RoundEnv,
    result: RoundResult,
    baseline: tuple[dict[str, Any], Snapshot, ProcessTree],
    options: BenchOptions,
    tag: str,
    progress: Progress,
) -> None:
    assert running.metrics_port is not None
    before, start, peer_tree = baseline
    after = storage.scrape(running.metrics_port)
    # The gateway's CPU over the same span as its MQTT client's (to this scrape).
    cpu_s = peer_tree.cpu_seconds() - (start.peer_cpu_s or 0.0)
    result.extras["claimed_readings"] = after.get("written:readings")
    result.extras["points_by_measurement"] = {
        k.split(":", 1)[1]: v for k, v in after.items() if k.startswith("written:")
    }
    share = storage.mqtt_cpu_share(before, after, cpu_s)
    if share is not None:
        result.extras["mqtt_client_cpu_share"] = round(share, 3)
        result.extras["mqtt_client_cpu_s"] = round(share * cpu_s, 3)
    if not (peer.measures_latency and options.latency and result.readings_per_s):
        return
    rate = result.readings_per_s / 2
    progress(
        f"{tag}: latency at half that rate, {rate:,.0f} readings/s for {options.latency_s:g} s"
    )
    try:
        cpu0, t0 = peer_tree.cpu_seconds(), time.monotonic()
        latency = storage.latency_phase(
            metrics_port=running.metrics_port,
            host=env.endpoints.mqtt_host,
            port=env.endpoints.mqtt_port,
            prefix=env.workload.topic_prefix,
            devices=storage.paced_devices(env.workload, options.latency_fleet),
            readings_per_message=env.workload.readings_per_message,
            rate=rate,
            duration_s=options.latency_s,
            fleet=storage.paced_fleet(env.workload, options.latency_fleet),
            env=child_env(),
        )
    except SensorGateError as exc:
        result.extras["latency"] = {"error": str(exc)}
        return
    # A paced load is not a burst: batches are small, and what each costs whatever its
    # size (a shard step, a write) weighs on every reading. Reported beside the burst.
    latency.update(paced_cpu(peer_tree.cpu_seconds() - cpu0, time.monotonic() - t0, latency))
    latency["fleet"] = options.latency_fleet
    result.extras["latency"] = latency


def paced_cpu(cpu_s: float, wall_s: float, latency: dict[str, Any]) -> dict[str, float]:
    """Return the gateway's CPU over a paced phase: seconds, share of a core, µs per reading."""
    out = {"gateway_cpu_s": round(cpu_s, 3), "gateway_core_share": round(cpu_s / wall_s, 4)}
    stored = latency.get("stored") or 0
    if stored > 0:
        out["gateway_cpu_us_per_reading"] = round(cpu_s / stored * 1e6, 2)
    return out


def _ceiling_round(
    peer: Peer, round_no: int, options: BenchOptions, tag: str, progress: Progress
) -> RoundResult:
    workload = options.workload
    result = RoundResult(peer.name, round_no, expected=workload.total)
    with recorded_failure(result), fresh_services() as (local, influxd):
        assert local.influxd is not None
        t = time.monotonic()
        batches = render_batches(workload)
        progress(
            f"{tag}: posting {workload.total:,} points in {len(batches):,} batches"
            f" (rendered in {time.monotonic() - t:.1f} s)"
        )
        tree = ProcessTree(local.influxd.pid)
        stats0, cpu0 = influxd.write_stats(), tree.cpu_seconds()
        run = post_batches(local.endpoints.influx_url, DATABASE, batches)
        cpu1, stats1 = tree.cpu_seconds(), influxd.write_stats()
        result.stored = influxd.count_readings()
        result.seconds = round(run.seconds, 3)
        result.readings_per_s = round(min(result.stored, workload.total) / run.seconds, 1)
        result.influxd_cpu_s = round(cpu1 - cpu0, 3)
        result.points_written = stats1.point_req - stats0.point_req
        result.write_requests = stats1.write_req - stats0.write_req
        result.influxd_server_errors = stats1.server_errors - stats0.server_errors
        result.extras["retries"] = run.retries
        result.extras["influxd_cpu_us_per_point"] = round(
            result.influxd_cpu_s * 1e6 / workload.total, 2
        )
    return result


def _idle_gateway(options: BenchOptions, progress: Progress) -> dict[str, object]:
    progress(f"idle gateway (default rules): CPU over {options.idle_s:g} s with no traffic")
    peer = SensorGatePeer("sensorgate", None, "SensorGate, default rules")
    try:
        with fresh_services() as (local, influxd):
            env = RoundEnv(local.endpoints, influxd, local.workdir, options.workload)
            running = peer.start(env)
            try:
                figure: dict[str, object] = dict(
                    idle_cpu_share(ProcessTree(running.pid), options.idle_s)
                )
            finally:
                running.stop()
    except (SensorGateError, psutil.Error) as exc:
        return {"error": str(exc) or type(exc).__name__}
    progress(f"idle gateway: {figure['cpu_share']:.1%} of one core, {figure['peak_rss_mb']} MB")
    return figure
