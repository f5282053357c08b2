"""Run ``sensorgate bench-stop``: stop a gateway mid-burst, drain with a second one.

One trial (a stop mode, a round), on fresh mosquitto and influxd:

1. the first gateway starts (default rules, a recovery directory; for the
   ``sigint-ignored`` mode with SIGINT ignored from the start, as ``cmd &`` in a script
   starts it) and the burst publisher (:mod:`gateway.bench.publisher`) sends the
   workload;
2. once the gateway says it stored ``stop_at`` of the readings, it gets the mode's
   signal; the time from the signal to its exit is measured (the process is reaped
   through a pidfd, so the moment is exact); a graceful stop that has not ended after
   ``exit_limit_s`` is ended with SIGKILL and reported as such;
3. the readings in influxd are counted; a second gateway starts on the same settings
   (same MQTT client ids and share group, so the broker resumes the session; the same
   recovery directory) and drains the rest; its
   ``sensorgate_redelivered_messages_total`` (messages the broker sent again) and
   ``sensorgate_duplicate_readings_total`` (readings its dedupe dropped) are read, and
   every reading is counted in influxd;
4. the second gateway is stopped with SIGTERM too, idle (its exit time is reported).

The bound on the messages in flight (:func:`~gateway.bench.stop_results.estimate_in_flight`)
is estimated from the workload, the first gateway's measured message rate and its
settings.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from contract.errors import SensorGateError, ServiceError
from gateway.bench import storage
from gateway.bench.facts import machine_facts, service_versions
from gateway.bench.measure import ProcessTree, take_snapshot, watch_until_stored
from gateway.bench.peers import (
    NO_RULES,
    RoundEnv,
    gateway_settings,
    start_gateway,
)
from gateway.bench.rounds import (
    Progress,
    default_timeout_s,
    fresh_services,
    now_utc,
    start_publisher,
)
from gateway.bench.stop_results import (
    MODES,
    StopMode,
    StopReport,
    StopTrial,
    estimate_in_flight,
    problems,
    summarize_trials,
)
from gateway.bench.stop_waits import (
    message_rate,
    signal_and_wait,
    socket_buffer_bytes,
    until_quiet,
    until_still,
    until_stored,
)
from gateway.bench.workload import Workload
from gateway.localstack.services import free_port
from gateway.settings import GatewaySettings

__all__ = ["StopOptions", "run_bench_stop"]


@dataclass(frozen=True)
class StopOptions:
    """What to run."""

    workload: Workload
    modes: tuple[str, ...]
    rounds: int
    stop_at: float = 0.3
    """Share of the readings the first gateway has stored when it gets the signal."""
    storage_only: bool = False
    """Run the gateways with ``deploy/rules/none.toml`` instead of the default rules."""
    recovery: bool = True
    """Give both gateways one recovery directory (dedupe state survives the stop)."""
    exit_limit_s: float = 60.0
    """Longest wait for a graceful exit before SIGKILL."""
    keep_logs: Path | None = None
    """Copy every trial's logs under this directory."""
    command: str = ""

    @property
    def drain_timeout_s(self) -> float:
        """The longest wait for one gateway to store its part of the burst."""
        return default_timeout_s(self.workload.total)


def run_bench_stop(options: StopOptions, progress: Progress = lambda _m: None) -> StopReport:
    """Run every mode in every round; return the report (failures are in it)."""
    t0 = time.monotonic()
    probe = GatewaySettings()
    report = StopReport(
        started_at=now_utc(),
        command=options.command,
        workload=options.workload.as_dict(),
        settings={
            "epoch_interval_s": probe.epoch_interval_s,
            "inbox_max_bytes": probe.mqtt.inbox_max_bytes,
            "batch_max_messages": probe.mqtt.batch_max_messages,
            "receive_maximum": probe.mqtt.receive_maximum,
            "recovery": options.recovery,
            "rules": "deploy/rules/none.toml" if options.storage_only else "default",
            "socket_buffer_bytes": socket_buffer_bytes(),
        },
        rounds=options.rounds,
        modes=list(options.modes),
        stop_at=options.stop_at,
        machine=machine_facts(),
        versions=service_versions(),
    )
    for round_no in range(1, options.rounds + 1):
        for name in options.modes:
            tag = f"round {round_no}/{options.rounds} · {name}"
            trial = _trial(MODES[name], round_no, options, tag, progress)
            report.trials.append(trial)
            progress(f"{tag}: {_one_line(trial)}")
    report.summaries = summarize_trials(report.trials)
    report.problems = problems(report.trials)
    report.finished_at = now_utc()
    report.wall_s = round(time.monotonic() - t0, 1)
    return report


def _one_line(t: StopTrial) -> str:
    if t.error:
        return f"FAILED: {t.error.splitlines()[0]}"
    parts = [
        f"exit {t.exit_s:.2f} s (code {t.exit_code})" if t.exit_s is not None else "killed",
        f"stored {t.stored_at_signal:,} at the signal, {t.first_stored:,} by its exit",
        f"redelivered {t.redelivered}",
        f"duplicates {t.duplicates}",
        f"re-stored {t.rewritten}",
        f"stored {t.stored:,}/{t.expected:,}" if t.stored is not None else "not counted",
    ]
    if t.bound is not None:
        parts.append(f"bound {t.bound.bound:,} ({t.bound.bound_with_sockets:,} with sockets)")
    return ", ".join(parts)


def _trial(
    mode: StopMode, round_no: int, options: StopOptions, tag: str, progress: Progress
) -> StopTrial:
    workload = options.workload
    trial = StopTrial(
        round_no, mode.name, workload.total, workload.messages, graceful=mode.graceful
    )
    try:
        with fresh_services() as (local, influxd):
            assert local.influxd is not None
            env = RoundEnv(local.endpoints, influxd, local.workdir, workload)
            settings = gateway_settings(
                env,
                rules_file=NO_RULES if options.storage_only else None,
                recovery=options.recovery,
                recovery_dir=local.workdir / "recovery",
            )
            influxd_tree = ProcessTree(local.influxd.pid)
            try:
                _stop_first(env, settings, mode, trial, options, tag, progress)
                _drain_with_second(env, settings, influxd_tree, trial, options, tag, progress)
            finally:
                _keep_logs(local.workdir, options.keep_logs, f"{mode.name}-round{round_no}")
    except (SensorGateError, psutil.Error, OSError) as exc:
        trial.error = str(exc) or type(exc).__name__
    return trial


def _keep_logs(workdir: Path, into: Path | None, name: str) -> None:
    """Copy the trial's logs (gateways, publisher, services) before the workdir goes."""
    if into is None:
        return
    target = into / name
    target.mkdir(parents=True, exist_ok=True)
    for log in workdir.rglob("*.log"):
        shutil.copy2(log, target / log.name)


def _stop_first(
    env: RoundEnv,
    settings: GatewaySettings,
    mode: StopMode,
    trial: StopTrial,
    options: StopOptions,
    tag: str,
    progress: Progress,
) -> None:
    """Start the first gateway and the burst; signal it mid-burst; count what it stored."""
    workload = env.workload
    first = start_gateway(
        "gateway-first", settings, env.workdir, ignore_sigint=mode.ignore_sigint_at_start
    )
    publisher = start_publisher(workload, env.endpoints, env.workdir)
    try:
        ready = publisher.wait_ready(300.0)
        target = int(options.stop_at * workload.total)
        progress(
            f"{tag}: publishing {workload.total:,} readings; {mode.description} once"
            f" {target:,} are stored"
        )
        publisher.go()
        seen = until_stored(first, target, options.drain_timeout_s)
        trial.stored_at_signal = int(seen[-1][1].get("written:readings", 0))
        trial.bound = estimate_in_flight(
            message_bytes=ready["bytes"] / ready["messages"],
            messages_per_s=message_rate(seen),
            epoch_interval_s=settings.epoch_interval_s,
            inbox_max_bytes=settings.mqtt.inbox_max_bytes,
            batch_max_messages=settings.mqtt.batch_max_messages,
            receive_maximum=settings.mqtt.receive_maximum,
            socket_bytes=socket_buffer_bytes(),
        )
        trial.exit_s, trial.exit_code = signal_and_wait(
            first.proc.proc, mode.signal, options.exit_limit_s
        )
        trial.forced = trial.exit_s is None
        if trial.forced or (mode.graceful and trial.exit_code != 0):
            trial.extras["first_log_tail"] = first.proc.log_tail(40)
        done = publisher.wait_done(max(120.0, options.drain_timeout_s))
        if not done.get("all_acknowledged"):
            raise ServiceError("the broker did not acknowledge every message of the burst")
    finally:
        publisher.stop()
        first.stop()
    # A killed gateway may leave writes in flight that influxd still completes.
    until_still(env.influxd, 1.0)
    trial.first_stored = env.influxd.count_readings()


def _drain_with_second(
    env: RoundEnv,
    settings: GatewaySettings,
    influxd_tree: ProcessTree,
    trial: StopTrial,
    options: StopOptions,
    tag: str,
    progress: Progress,
) -> None:
    """Start the second gateway on the same settings; let it store the rest; read it."""
    assert trial.first_stored is not None
    rest = trial.expected - trial.first_stored
    progress(f"{tag}: the first stored {trial.first_stored:,}; the second drains the rest")
    t0 = time.monotonic()
    second = start_gateway(
        "gateway-second", settings.model_copy(update={"metrics_port": free_port()}), env.workdir
    )
    try:
        trial.second_ready_s = round(time.monotonic() - t0, 3)
        assert second.metrics_port is not None
        if rest > 0:
            peer = ProcessTree(second.pid)
            start = take_snapshot(env.influxd, influxd_tree, peer, second.claimed)
            done = watch_until_stored(
                env.influxd,
                influxd_tree,
                peer,
                start=start,
                expected=rest,
                timeout_s=options.drain_timeout_s,
                claimed=second.claimed,
            )
            if done.outcome != "settled":
                raise ServiceError(f"the second gateway did not drain the burst: {done.outcome}")
            trial.drain_s = round(done.end.t - start.t, 3)
        else:
            # Nothing left to store: wait only for what the broker may send again.
            until_quiet(second.metrics_port, 3.0)
            trial.drain_s = 0.0
        after = storage.scrape(second.metrics_port)
        trial.redelivered = int(after.get(storage.REDELIVERED_METRIC, 0))
        trial.duplicates = int(after.get(storage.DUPLICATES_METRIC, 0))
        trial.second_messages = int(after.get("sensorgate_messages_in_total", 0))
        trial.second_written = int(after.get("written:readings", 0))
        trial.late = int(after.get("sensorgate_late_readings_total", 0))
        trial.stored = env.influxd.count_readings()
        trial.second_exit_s, code = signal_and_wait(
            second.proc.proc, MODES["sigterm"].signal, options.exit_limit_s
        )
        trial.extras["second_exit_code"] = code
    finally:
        second.stop()
