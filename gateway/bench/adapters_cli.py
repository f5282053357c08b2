"""``sensorgate bench-adapters``: gateway throughput per foreign dialect, native beside it."""

from __future__ import annotations

import argparse

from gateway.bench import cli_options as opts
from gateway.bench.dialects import BENCH_DIALECTS

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench-adapters`` to a ``sensorgate`` parser."""
    p = subparsers.add_parser(
        "bench-adapters",
        help="readings/s per core of the gateway for each adapter family, native beside it",
        description="Publish one burst in each dialect (Zigbee2MQTT, Tasmota, Shelly Gen2 and"
        " Gen1, Home Assistant discovery, Sparkplug B, Telegraf; pre-rendered by the"
        " simulator's encoders) to a gateway whose"
        " adapters file enables that family, and SensorGate's own events to one without"
        " (the baseline), each against fresh mosquitto and influxd, rounds alternating"
        " between dialects; report stored/expected (the readings each dialect's messages"
        " carry), end-to-end readings/s, the gateway's CPU per million readings and"
        " readings/s per core. Writes a JSON report and a PNG chart. Exit 1 if a round"
        " failed, lost readings or had dead letters. See docs/adapters.md, Throughput.",
    )
    _add_workload_arguments(p.add_argument_group("workload"))
    run = p.add_argument_group("run")
    run.add_argument(
        "--dialects",
        default=",".join(BENCH_DIALECTS),
        metavar="LIST",
        help=f"comma-separated, in order (default {','.join(BENCH_DIALECTS)})",
    )
    opts.add_rounds(run, "the dialects")
    opts.add_storage_only(run, "gateway")
    opts.add_settle(run)
    opts.add_timeout(run)
    out = p.add_argument_group("output")
    opts.add_out(out, "reports/bench-adapters.json")
    opts.add_chart(out, "reports/bench-adapters.png")
    opts.add_json(out)
    p.set_defaults(func=_cmd)


def _add_workload_arguments(workload: argparse._ArgumentGroup) -> None:
    workload.add_argument("--devices", type=int, default=1_000, help="devices (1000)")
    workload.add_argument(
        "--readings-per-message",
        type=int,
        default=10,
        metavar="N",
        help="readings per message (10); Shelly Gen2 carries at most 5, Gen1 at most 8"
        " (one message each)",
    )
    workload.add_argument(
        "--total",
        type=int,
        default=1_000_000,
        metavar="N",
        help="readings per round and dialect (1,000,000; rounded down to whole messages)",
    )
    workload.add_argument("--qos", type=int, choices=[0, 1], default=1, help="publish QoS (1)")


def _cmd(args: argparse.Namespace) -> int:
    from gateway.bench.adapters import AdaptersBenchOptions, run_bench_adapters
    from gateway.bench.adapters_report import run_and_report
    from gateway.bench.workload import Workload

    dialects = opts.choose("dialects", [args.dialects], BENCH_DIALECTS)
    opts.require_rounds(args.rounds)
    rpm = args.readings_per_message
    workload = Workload(
        devices=args.devices,
        readings_per_message=rpm,
        total=(args.total // rpm) * rpm if rpm > 0 else args.total,
        sensors_per_device=max(rpm, 1),
        qos=args.qos,
    )
    options = AdaptersBenchOptions(
        workload=workload,
        dialects=dialects,
        rounds=args.rounds,
        storage_only=args.storage_only,
        command=opts.command_line(),
        settle_s=args.settle,
        timeout_s=args.timeout,
    )
    return run_and_report(
        lambda progress: run_bench_adapters(options, progress),
        out=args.out,
        chart_path=args.chart or None,
        as_json=args.json,
    )
