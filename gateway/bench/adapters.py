"""Run ``sensorgate bench-adapters``: the gateway fed each foreign dialect, native beside it.

The same burst (:mod:`gateway.bench.workload`: devices, readings per message, total)
is published in each dialect (:mod:`gateway.bench.dialects`) to a gateway whose
adapters file enables that family, so the readings take the gateway's real path:
MQTT source, routing by the adapter's device key, the shard's adapters decoding into
the same columns as native telemetry, dedupe, windows, the rules, the pipelined
InfluxDB writer. ``native`` (SensorGate's own events, no adapters file) runs in the
same rounds as the baseline. Rounds alternate over the dialects (``for round in rounds:
for dialect in dialects``), each against fresh mosquitto and influxd. One round of one
dialect:

1. fresh services, database ``bench``; the adapters file in the round's directory;
2. the gateway (``python -m gateway.cli gateway run``), ready on ``/healthz``;
3. the publisher process renders the whole burst in the dialect, connects, and says
   how many readings its messages carry (the expected count);
4. the burst; influxd's write statistics are polled until still
   (:func:`~gateway.bench.measure.watch_until_stored`); the readings are counted once.

A round whose services or gateway could not bind a port (taken by another process
between finding it free and binding it) is started again, up to three times.

Figures per round (:class:`~gateway.bench.results.RoundResult`, ``peer`` = the
dialect): stored/expected, end-to-end readings/s (first publish to last reading
stored), the gateway's CPU (its whole process tree) and influxd's from the start of
the burst to the last reading stored; readings/s per core is expected readings per
gateway CPU second. No aggregates wait and no latency phase: ``sensorgate bench`` has
those for native telemetry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gateway.bench import storage
from gateway.bench.adapters_results import AdaptersReport, per_core, summarize_dialects
from gateway.bench.dialects import adapters_toml, dialect_workload, reading_messages
from gateway.bench.facts import machine_facts, service_versions
from gateway.bench.measure import ProcessTree, Snapshot
from gateway.bench.peers import (
    NO_RULES,
    RoundEnv,
    RunningPeer,
    gateway_settings,
    start_gateway,
)
from gateway.bench.results import BenchReport, RoundResult
from gateway.bench.round_figures import fill_burst_figures
from gateway.bench.rounds import (
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

__all__ = ["LABELS", "AdaptersBenchOptions", "run_bench_adapters"]


LABELS = {
    "native": "SensorGate telemetry events (no adapter): the baseline",
    "zigbee2mqtt": "Zigbee2MQTT device state JSON",
    "tasmota": "Tasmota tele/SENSOR",
    "shelly": "Shelly Gen2 NotifyStatus",
    "shelly1": "Shelly Gen1 per-value topics (one number per message)",
    "homeassistant": "Home Assistant discovery configs, then JSON states",
    "sparkplug": "Sparkplug B NBIRTH/NDATA (protobuf, aliases)",
    "telegraf": "Telegraf outputs.mqtt line protocol",
}


@dataclass(frozen=True)
class AdaptersBenchOptions:
    """What to run."""

    workload: Workload
    dialects: tuple[str, ...]
    rounds: int
    storage_only: bool = False
    """Run the gateway with ``deploy/rules/none.toml`` instead of the default rules."""
    command: str = ""
    settle_s: float = 3.0
    timeout_s: float | None = None
    """Longest wait for one burst (default: 120 s + 1 s per 2,000 readings)."""

    @property
    def burst_timeout_s(self) -> float:
        """The longest wait for one burst."""
        return self.timeout_s or default_timeout_s(self.workload.total)


def run_bench_adapters(options: AdaptersBenchOptions, progress: Progress) -> AdaptersReport:
    """Run every round of every dialect; return the report (failures in it, not raised)."""
    t0 = time.monotonic()
    workload = options.workload
    shapes = {d: dialect_workload(workload, d) for d in options.dialects}
    report = BenchReport(
        started_at=now_utc(),
        command=options.command,
        scenario="adapters" + (" (storage only)" if options.storage_only else ""),
        workload={
            **workload.as_dict(),
            "rules": "deploy/rules/none.toml" if options.storage_only else "default",
            "per_dialect": {
                d: {
                    "readings_per_message": reading_messages(workload, d)[0],
                    "messages": reading_messages(workload, d)[1],
                    "readings": s.total,
                    "adapters_file": adapters_toml(d),
                }
                for d, s in shapes.items()
            },
        },
        rounds=options.rounds,
        peers=list(options.dialects),
        machine=machine_facts(),
        versions=service_versions(),
    )
    for round_no in range(1, options.rounds + 1):
        for dialect in options.dialects:
            tag = f"round {round_no}/{options.rounds} · {dialect}"
            progress(f"{tag}: {LABELS.get(dialect, dialect)}")
            result = _round(dialect, round_no, options, tag, progress)
            report.results.append(result)
            progress(f"{tag}: {_one_line(result)}")
    report.finished_at = now_utc()
    report.wall_s = round(time.monotonic() - t0, 1)
    return AdaptersReport(report, summarize_dialects(report.results, LABELS))


def _one_line(r: RoundResult) -> str:
    core = per_core(r)
    if core is None:
        return round_line(r, [])
    return round_line(
        r, [f"gateway CPU {r.peer_cpu_s_per_m:.1f} s/M = {core:,.0f} readings/s per core"]
    )


_PORT_TAKEN = ("address already in use", "port clash")
_ROUND_ATTEMPTS = 3


def _round(
    dialect: str, round_no: int, options: AdaptersBenchOptions, tag: str, progress: Progress
) -> RoundResult:
    """Run one round; start it again if a port was taken before the burst began.

    Ports are found free and then bound by mosquitto, influxd and the gateway; on a
    machine shared with other work something else may bind one in between.
    """
    for attempt in range(1, _ROUND_ATTEMPTS + 1):
        result = _attempt(dialect, round_no, options, tag, progress)
        started = "messages" in result.extras
        error = (result.error or "").lower()
        if started or not any(p in error for p in _PORT_TAKEN) or attempt == _ROUND_ATTEMPTS:
            break
        progress(f"{tag}: a port was taken by another process; starting the round again")
    result.extras["attempts"] = attempt
    return result


def _attempt(
    dialect: str, round_no: int, options: AdaptersBenchOptions, tag: str, progress: Progress
) -> RoundResult:
    shaped = dialect_workload(options.workload, dialect)
    result = RoundResult(dialect, round_no, expected=shaped.total)
    with recorded_failure(result), fresh_services() as (local, influxd):
        assert local.influxd is not None
        env = RoundEnv(local.endpoints, influxd, local.workdir, shaped)
        overrides: dict[str, Any] = {}
        text = adapters_toml(dialect)
        if text is not None:
            path = local.workdir / "adapters.toml"
            path.write_text(text, encoding="utf-8")
            overrides["adapters_file"] = path
        settings = gateway_settings(
            env, rules_file=NO_RULES if options.storage_only else None, **overrides
        )
        running = start_gateway(f"sensorgate-{dialect}", settings, local.workdir)
        try:
            _burst(
                dialect,
                running,
                env,
                ProcessTree(local.influxd.pid),
                result,
                options,
                tag,
                progress,
            )
            if result.outcome == "peer exited":
                result.error = f"{result.error}; its log:\n{running.proc.log_tail()}"
        finally:
            running.stop()
    return result


def _burst(
    dialect: str,
    running: RunningPeer,
    env: RoundEnv,
    influxd_tree: ProcessTree,
    result: RoundResult,
    options: AdaptersBenchOptions,
    tag: str,
    progress: Progress,
) -> None:
    publisher = start_publisher(options.workload, env.endpoints, env.workdir, dialect)
    try:
        ready = publisher.wait_ready(300.0)
        result.expected = int(ready["readings"])
        messages = int(ready["messages"])
        carrying = int(ready["reading_messages"])
        result.extras.update(
            messages=messages,
            status_messages=messages - carrying,
            # per MQTT message: a tick's readings, or one (Shelly Gen1)
            readings_per_message=result.expected // max(carrying, 1),
            payload_bytes=int(ready["bytes"]),
        )
        progress(
            f"{tag}: publishing {result.expected:,} readings in {messages:,} messages"
            f" ({ready['bytes'] / 1e6:,.0f} MB, rendered in {ready['render_s']:.1f} s)"
        )
        peer_tree = ProcessTree(running.pid)
        metrics_port = running.metrics_port
        before = storage.scrape(metrics_port) if metrics_port else {}
        start, completion, done = burst_until_stored(
            env.influxd, influxd_tree, peer_tree, running.claimed, publisher,
            expected=result.expected, limits=options, tag=tag, progress=progress,
        )  # fmt: skip
    finally:
        publisher.stop()
    fill_burst_figures(result, completion, done, env.influxd.count_readings())
    core = per_core(result)
    if core is not None:
        result.extras["readings_per_s_per_core"] = round(core, 1)
    sustained = storage.sustained_rate(completion.samples)
    if sustained is not None:
        result.extras["gateway_sustained_readings_per_s"] = round(sustained, 1)
    if metrics_port is not None:
        _gateway_counters(result, before, storage.scrape(metrics_port), peer_tree, start)


def _gateway_counters(
    result: RoundResult,
    before: dict[str, Any],
    after: dict[str, Any],
    peer_tree: ProcessTree,
    start: Snapshot,
) -> None:
    """Record what the gateway says it did: readings in, dead letters, its MQTT share."""

    def delta(key: str) -> float | None:
        if key not in after:
            return None
        return float(after[key] - before.get(key, 0.0))

    result.extras["gateway_readings_in"] = delta("sensorgate_readings_in_total")
    result.extras["gateway_messages_in"] = delta("sensorgate_messages_in_total")
    result.extras["claimed_readings"] = after.get("written:readings")
    result.extras["deadletters"] = delta(storage.DEADLETTERS_METRIC) or 0.0
    # A reading not stored may have been taken for a duplicate (a synthesised sequence
    # collision: same millisecond, same 20 hashed bits): say so rather than guess.
    result.extras["duplicates"] = delta(storage.DUPLICATES_METRIC) or 0.0
    cpu_s = peer_tree.cpu_seconds() - (start.peer_cpu_s or 0.0)
    share = storage.mqtt_cpu_share(before, after, cpu_s)
    if share is not None:
        result.extras["mqtt_client_cpu_share"] = round(share, 3)
