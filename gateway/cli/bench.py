"""``sensorgate bench`` and ``bench-stop``: the gateway beside its peers; stopped mid-burst."""

from __future__ import annotations

import argparse

from gateway.bench import cli_options as opts

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench`` and ``bench-stop``."""
    bench = sub.add_parser(
        "bench",
        help="the gateway side by side with Node-RED, a naive script and influxd's ceiling",
        description="Publish one fixed burst of telemetry (default: 1,000 devices, 50"
        " readings per QoS 1 message, 1 M readings) to each peer in turn, each against fresh"
        " mosquitto and influxd, rounds alternating between peers; report stored/expected,"
        " end-to-end readings/s, CPU per million readings (peer and influxd), peak RSS, the"
        " fraction of influxd's own ceiling and the ratio to Node-RED. Writes a JSON report"
        " and a PNG chart. See docs/benchmarks.md.",
    )
    _add_bench_arguments(bench)
    bench.set_defaults(func=_cmd_bench)

    bench_stop = sub.add_parser(
        "bench-stop",
        help="graceful stop (SIGTERM, SIGINT) and SIGKILL mid-burst: exit time, redelivery",
        description="On fresh mosquitto and influxd, per stop mode and round: run the"
        " gateway (default rules, a recovery directory) under the burst workload, send it"
        " the mode's signal once --stop-at of the readings are stored, time the signal to"
        " the process's exit, then drain the rest with a second gateway on the same"
        " settings (same client ids, share group and recovery directory) and report the"
        " messages the broker sent again, the duplicate readings dropped, the readings"
        " stored twice and the count stored, beside the in-flight bound estimated from the"
        " workload and settings. Median (min-max) over --rounds. Writes a JSON report."
        " Exit 1 if a trial failed or missed a target. See docs/benchmarks.md.",
    )
    _add_bench_stop_arguments(bench_stop)
    bench_stop.set_defaults(func=_cmd_bench_stop)


_BENCH_PEERS = ("sensorgate", "sensorgate-storage", "nodered", "naive", "influxd")


def _add_bench_arguments(bench: argparse.ArgumentParser) -> None:
    workload = bench.add_argument_group("workload (defaults: the scenario's)")
    workload.add_argument(
        "--scenario",
        choices=["peer", "series100k", "burst5m"],
        default="peer",
        help="peer: 1,000 devices x 50 sensors, 1 M readings (default); series100k: 10,000"
        " devices x 10 series; burst5m: the peer workload with 5 M readings",
    )
    opts.add_workload(
        workload,
        devices="devices",
        readings_per_message="1 ms apart",
        total="readings in the burst",
        sensors_per_device="sensors s0..s(N-1) per device; metrics cycle over m0..m9",
        qos="publish QoS",
    )
    run = bench.add_argument_group("run")
    run.add_argument(
        "--peers",
        action="append",
        default=None,
        metavar="LIST",
        help=f"comma-separated peers to run, in order (default: all: {','.join(_BENCH_PEERS)})",
    )
    opts.add_rounds(run, "the peers")
    _add_latency_arguments(run)
    run.add_argument(
        "--idle",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds of idle-gateway CPU to measure after the rounds (0: skip; default 30)",
    )
    opts.add_settle(run)
    opts.add_timeout(run)
    out = bench.add_argument_group("output")
    opts.add_out(out, "reports/bench.json")
    opts.add_chart(out, "reports/bench.png")
    opts.add_json(out)


def _add_latency_arguments(run: argparse._ArgumentGroup) -> None:
    run.add_argument(
        "--latency",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="for the sensorgate peers, p50/p99 arrival-to-stored in a paced phase at half"
        " the measured rate (default on)",
    )
    run.add_argument(
        "--latency-duration",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds of the paced latency phase (default 60: it then holds one close of"
        " the default 1 min windows, whose aggregates reach influxd all at once)",
    )
    run.add_argument(
        "--latency-fleet",
        choices=("burst", "new"),
        default="burst",
        help="who publishes in the paced phase: the burst's own devices and series, going"
        " on where the burst stopped (burst, the default: steady state), or a new fleet of"
        " as many devices with 10 series each, every one unknown to the gateway (new:"
        " onboarding)",
    )


def _cmd_bench(args: argparse.Namespace) -> int:
    import os

    from gateway.bench.nodered import default_cache_dir
    from gateway.bench.report import run_and_report
    from gateway.bench.runner import BenchOptions, run_bench
    from gateway.bench.workload import SCENARIOS, with_overrides

    peers = opts.choose("peers", args.peers or [",".join(_BENCH_PEERS)], _BENCH_PEERS)
    opts.require_rounds(args.rounds)
    workload = with_overrides(
        SCENARIOS[args.scenario].workload,
        devices=args.devices,
        readings_per_message=args.readings_per_message,
        total=args.total,
        sensors_per_device=args.sensors_per_device,
        qos=args.qos,
    )
    options = BenchOptions(
        scenario=args.scenario,
        workload=workload,
        peers=peers,
        rounds=args.rounds,
        nodered_cache=default_cache_dir(os.environ),
        command=opts.command_line(),
        latency=args.latency,
        latency_s=args.latency_duration,
        latency_fleet=args.latency_fleet,
        idle_s=args.idle,
        settle_s=args.settle,
        timeout_s=args.timeout,
    )
    return run_and_report(
        lambda progress: run_bench(options, progress),
        out=args.out,
        chart_path=args.chart or None,
        as_json=args.json,
    )


def _add_bench_stop_arguments(p: argparse.ArgumentParser) -> None:
    from gateway.bench.stop_results import DEFAULT_MODES, MODES

    workload = p.add_argument_group("workload (default: the bench's peer workload)")
    opts.add_workload(
        workload,
        devices="devices",
        readings_per_message="1 ms apart",
        total="readings in the burst (1,000,000)",
        sensors_per_device="sensors per device",
    )
    run = p.add_argument_group("run")
    run.add_argument(
        "--modes",
        default=",".join(DEFAULT_MODES),
        metavar="LIST",
        help=f"comma-separated stop modes, of {', '.join(MODES)}"
        f" (default {','.join(DEFAULT_MODES)})",
    )
    opts.add_rounds(run, "the modes")
    run.add_argument(
        "--stop-at",
        type=float,
        default=0.3,
        metavar="SHARE",
        help="signal the first gateway once it stored this share of the readings (0.3)",
    )
    opts.add_storage_only(run)
    run.add_argument(
        "--recovery",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one recovery directory for both gateways (default on)",
    )
    run.add_argument(
        "--exit-limit",
        type=float,
        default=60.0,
        metavar="S",
        help="SIGKILL a gateway that has not exited this long after the signal (60)",
    )
    out = p.add_argument_group("output")
    opts.add_out(out, "reports/bench-stop.json")
    out.add_argument(
        "--keep-logs",
        default=None,
        metavar="DIR",
        help="copy each trial's logs (gateways, publisher, services) under DIR",
    )
    opts.add_json(out)


def _cmd_bench_stop(args: argparse.Namespace) -> int:
    from pathlib import Path

    from contract.errors import ConfigError
    from gateway.bench.stop import StopOptions, run_bench_stop
    from gateway.bench.stop_report import run_and_report_stop
    from gateway.bench.stop_results import MODES
    from gateway.bench.workload import SCENARIOS, with_overrides

    modes = opts.choose("modes", [args.modes], MODES)
    opts.require_rounds(args.rounds)
    if not 0 < args.stop_at < 1:
        raise ConfigError("stop_at", f"must be between 0 and 1; got {args.stop_at}")
    workload = with_overrides(
        SCENARIOS["peer"].workload,
        devices=args.devices,
        readings_per_message=args.readings_per_message,
        total=args.total,
        sensors_per_device=args.sensors_per_device,
    )
    options = StopOptions(
        workload=workload,
        modes=modes,
        rounds=args.rounds,
        stop_at=args.stop_at,
        storage_only=args.storage_only,
        recovery=args.recovery,
        exit_limit_s=args.exit_limit,
        keep_logs=Path(args.keep_logs) if args.keep_logs else None,
        command=opts.command_line(),
    )
    return run_and_report_stop(
        lambda progress: run_bench_stop(options, progress), out=args.out, as_json=args.json
    )
