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

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from contract.errors import SensorGateError
from gateway.bench import storage
from gateway.bench.aggregates import AggregatesDone, plan_aggregates, watch_aggregates
from gateway.bench.facts import machine_facts, service_versions
from gateway.bench.influx_ceiling import post_batches, render_batches
from gateway.bench.influxd import Influxd
from gateway.bench.measure import (
    Completion,
    ProcessTree,
    Snapshot,
    idle_cpu_share,
    take_snapshot,
    watch_until_stored,
)
from gateway.bench.peers import Peer, RoundEnv, RunningPeer, SensorGatePeer, child_env, make_peers
from gateway.bench.publisher import PublisherProcess
from gateway.bench.results import BenchReport, RoundResult, summarize
from gateway.bench.workload import Workload
from gateway.influx.layout import StorageLayout
from gateway.localstack.services import LocalServices

__all__ = ["BenchOptions", "fill_aggregate_figures", "fill_burst_figures", "run_bench"]

DATABASE = "bench"
Progress = Callable[[str], None]


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
    latency_s: float = 10.0
    idle_s: float = 30.0
    """Seconds of idle gateway CPU to measure (0: skip)."""
    settle_s: float = 3.0
    timeout_s: float | None = None
    """Longest wait for one burst to be stored (default: 120 s + 1 s per 2,000 readings)."""

    @property
    def burst_timeout_s(self) -> float:
        """The longest wait for one burst."""
        return self.timeout_s or 120.0 + self.workload.total / 2_000


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_bench(options: BenchOptions, progress: Progress = lambda _m: None) -> BenchReport:
    """Run every round of every peer; return the report (failures are in it, not raised)."""
    t0 = time.monotonic()
    peers = make_peers(list(options.peers), nodered_cache=options.nodered_cache)
    report = BenchReport(
        started_at=_now(),
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
    report.finished_at = _now()
    report.wall_s = round(time.monotonic() - t0, 1)
    return report


def _one_line(r: RoundResult) -> str:
    if r.error:
        return f"FAILED: {r.error.splitlines()[0]}"
    parts = [f"stored {r.stored:,}/{r.expected:,}" if r.stored is not None else "not counted"]
    if r.readings_per_s:
        parts.append(f"{r.readings_per_s:,.0f} readings/s end to end")
    if r.peer_cpu_s_per_m is not None:
        parts.append(f"peer CPU {r.peer_cpu_s_per_m:.1f} s/M")
    if r.influxd_cpu_s_per_m is not None:
        parts.append(f"influxd CPU {r.influxd_cpu_s_per_m:.1f} s/M")
    if r.outcome != "settled":
        parts.append(f"({r.outcome})")
    if r.lost:
        parts.append(f"LOST {r.lost:,}")
    return ", ".join(parts)


def _peer_round(
    peer: Peer, round_no: int, options: BenchOptions, tag: str, progress: Progress
) -> RoundResult:
    workload = options.workload
    result = RoundResult(peer.name, round_no, expected=workload.total)
    try:
        with LocalServices() as local, Influxd(local.endpoints.influx_url, DATABASE) as influxd:
            influxd.create_database()
            assert local.influxd is not None
            env = RoundEnv(local.endpoints, influxd, local.workdir, workload)
            running = peer.start(env)
            try:
                _burst(
                    peer,
                    running,
                    env,
                    ProcessTree(local.influxd.pid),
                    result,
                    options,
                    tag,
                    progress,
                )
            finally:
                running.stop()
    except (SensorGateError, psutil.Error) as exc:
        result.error = str(exc) or type(exc).__name__
        result.outcome = "failed"
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
    publisher = PublisherProcess(
        workload,
        host=env.endpoints.mqtt_host,
        port=env.endpoints.mqtt_port,
        log_path=env.workdir / "publisher.log",
        env=child_env(),
    )
    try:
        ready = publisher.wait_ready(300.0)
        progress(
            f"{tag}: publishing {workload.total:,} readings in {ready['messages']:,} messages"
            f" ({ready['bytes'] / 1e6:,.0f} MB, rendered in {ready['render_s']:.1f} s)"
        )
        peer_tree = ProcessTree(running.pid)
        before = storage.scrape(running.metrics_port) if running.metrics_port else {}
        start, completion, done = burst_until_stored(
            env, influxd_tree, peer_tree, running, publisher,
            expected=workload.total, options=options, tag=tag, progress=progress,
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


def fill_aggregate_figures(
    result: RoundResult, completion: Completion, done: AggregatesDone
) -> None:
    """Extend the CPU figures of ``result`` to the last aggregate stored.

    The end-to-end rate stays the readings' (first publish to last reading stored); the
    CPU figures and the peak RSS then cover the burst's start to the end of ``done``.
    The readings-only CPU figures are kept in ``extras["to_last_reading"]``.
    """
    start, end = completion.start, done.end
    result.extras["to_last_reading"] = {
        "seconds": result.cpu_seconds,
        "peer_cpu_s": result.peer_cpu_s,
        "influxd_cpu_s": result.influxd_cpu_s,
    }
    result.aggregates_expected = done.expected
    result.aggregates_written = None if done.written is None else int(done.written)
    result.aggregates_outcome = done.outcome
    result.cpu_span = "readings+aggregates"
    result.cpu_seconds = round(end.t - start.t, 3)
    if end.peer_cpu_s is not None and start.peer_cpu_s is not None:
        result.peer_cpu_s = round(end.peer_cpu_s - start.peer_cpu_s, 3)
    result.influxd_cpu_s = round(end.influxd_cpu_s - start.influxd_cpu_s, 3)
    result.extras["after_last_reading_s"] = round(end.t - completion.end.t, 3)
    result.extras["points_written_to_last_aggregate"] = end.point_req - start.point_req
    # Every few seconds of the wait: what influxd took and what it cost (for the JSON).
    t0, step, next_t = completion.end.t, 2.0, completion.end.t
    timeline = []
    for snap in done.samples:
        if snap.t >= next_t or snap is done.samples[-1]:
            next_t = snap.t + step
            timeline.append(
                {
                    "t_s": round(snap.t - t0, 2),
                    "points": snap.point_req - start.point_req,
                    "aggregates": snap.claimed if snap is not done.samples[0] else None,
                    "influxd_cpu_s": round(snap.influxd_cpu_s - start.influxd_cpu_s, 2),
                    "peer_cpu_s": None
                    if snap.peer_cpu_s is None or start.peer_cpu_s is None
                    else round(snap.peer_cpu_s - start.peer_cpu_s, 2),
                }
            )
    result.extras["after_last_reading"] = timeline
    idle = _idle_shares(done.samples[1:])
    if idle is not None:
        result.extras["idle_while_waiting"] = idle
    if done.peak_rss is not None:
        result.peak_rss_mb = max(result.peak_rss_mb or 0.0, round(done.peak_rss / 1e6, 1))


def _idle_shares(samples: list[Snapshot], settle_s: float = 5.0) -> dict[str, float] | None:
    """CPU shares of one core while idle: neither count moved for ``settle_s`` before.

    influxd goes on absorbing a write for a few seconds after its point count moved (the
    count rises on receipt), so only the stretches that start ``settle_s`` after the
    last change count as idle.
    """
    span = peer = influxd = 0.0
    changed = samples[0].t if samples else 0.0
    for a, b in itertools.pairwise(samples):
        if a.point_req != b.point_req or a.claimed != b.claimed:
            changed = b.t
            continue
        if a.t - changed < settle_s:
            continue
        span += b.t - a.t
        influxd += b.influxd_cpu_s - a.influxd_cpu_s
        if a.peer_cpu_s is not None and b.peer_cpu_s is not None:
            peer += b.peer_cpu_s - a.peer_cpu_s
    if span <= 0:
        return None
    return {
        "seconds": round(span, 1),
        "peer_cpu_share": round(peer / span, 4),
        "influxd_cpu_share": round(influxd / span, 4),
    }


def fill_burst_figures(
    result: RoundResult, completion: Completion, published: dict[str, Any], stored: int
) -> None:
    """Fill ``result`` from the completion, the publisher's report and the stored count."""
    start, end = completion.start, completion.end
    result.outcome = completion.outcome
    result.stored = stored
    result.publish_s = float(published["acknowledged_s"])
    result.points_written = completion.points
    result.write_requests = completion.last.write_req - start.write_req
    result.influxd_server_errors = completion.last.server_errors - start.server_errors
    if end is not start:
        result.seconds = round(end.t - float(published["first_publish"]), 3)
        if result.seconds > 0:
            result.readings_per_s = round(min(stored, result.expected) / result.seconds, 1)
        if end.peer_cpu_s is not None and start.peer_cpu_s is not None:
            result.peer_cpu_s = round(end.peer_cpu_s - start.peer_cpu_s, 3)
        result.influxd_cpu_s = round(end.influxd_cpu_s - start.influxd_cpu_s, 3)
        result.cpu_seconds = round(end.t - start.t, 3)
    if completion.peak_rss is not None:
        result.peak_rss_mb = round(completion.peak_rss / 1e6, 1)
    if not published.get("all_acknowledged", False):
        result.error = "the broker did not acknowledge every message of the burst"
    if completion.outcome != "settled":
        result.error = f"the burst did not settle: {completion.outcome}"


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
        result.extras["latency"] = storage.latency_phase(
            metrics_port=running.metrics_port,
            host=env.endpoints.mqtt_host,
            port=env.endpoints.mqtt_port,
            prefix=env.workload.topic_prefix,
            devices=env.workload.devices,
            readings_per_message=env.workload.readings_per_message,
            rate=rate,
            duration_s=options.latency_s,
            env=child_env(),
        )
    except SensorGateError as exc:
        result.extras["latency"] = {"error": str(exc)}


def _ceiling_round(
    peer: Peer, round_no: int, options: BenchOptions, tag: str, progress: Progress
) -> RoundResult:
    workload = options.workload
    result = RoundResult(peer.name, round_no, expected=workload.total)
    try:
        with LocalServices() as local, Influxd(local.endpoints.influx_url, DATABASE) as influxd:
            influxd.create_database()
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
    except (SensorGateError, psutil.Error) as exc:
        result.error = str(exc) or type(exc).__name__
        result.outcome = "failed"
    return result


def _idle_gateway(options: BenchOptions, progress: Progress) -> dict[str, object]:
    progress(f"idle gateway (default rules): CPU over {options.idle_s:g} s with no traffic")
    peer = SensorGatePeer("sensorgate", None, "SensorGate, default rules")
    try:
        with LocalServices() as local, Influxd(local.endpoints.influx_url, DATABASE) as influxd:
            influxd.create_database()
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


def burst_until_stored(
    env: Any,
    influxd_tree: ProcessTree,
    peer_tree: ProcessTree,
    running: Any,
    publisher: Any,
    *,
    expected: int,
    options: Any,
    tag: str,
    progress: Callable[[str], None],
) -> tuple[Snapshot, Any, Any]:
    """Release the publisher's burst and watch influxd until ``expected`` points settle.

    Returns the snapshot at the start, the watch's completion and the publisher's own
    report; shared by the peer
    and the adapter benchmarks.
    """
    start = take_snapshot(env.influxd, influxd_tree, peer_tree, running.claimed)
    publisher.go()

    def show(snap: Snapshot) -> None:
        points = snap.point_req - start.point_req
        progress(
            f"{tag}: {points:,} points written so far"
            f" ({points / max(snap.t - start.t, 1e-9):,.0f}/s)"
        )

    completion = watch_until_stored(
        env.influxd,
        influxd_tree,
        peer_tree,
        start=start,
        expected=expected,
        settle_s=options.settle_s,
        timeout_s=options.burst_timeout_s,
        claimed=running.claimed,
        progress=show,
    )
    done = publisher.wait_done(max(60.0, options.burst_timeout_s))
    return start, completion, done
