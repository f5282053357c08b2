"""``sensorgate bench-adapters``: gateway throughput per foreign dialect, native beside it."""

from __future__ import annotations

import argparse
import shlex
import sys

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
    workload = p.add_argument_group("workload")
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
    run = p.add_argument_group("run")
    run.add_argument(
        "--dialects",
        default=",".join(BENCH_DIALECTS),
        metavar="LIST",
        help=f"comma-separated, in order (default {','.join(BENCH_DIALECTS)})",
    )
    run.add_argument("--rounds", type=int, default=3, help="rounds over the dialects (3)")
    run.add_argument(
        "--storage-only",
        action="store_true",
        help="run the gateway with deploy/rules/none.toml instead of the default rules",
    )
    run.add_argument(
        "--settle",
        type=float,
        default=3.0,
        metavar="S",
        help="the burst is stored once influxd's write count is still this long (3)",
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="longest wait for one burst (default 120 s + 1 s per 2,000 readings)",
    )
    out = p.add_argument_group("output")
    out.add_argument("--out", default="reports/bench-adapters.json", help="JSON report path")
    out.add_argument(
        "--chart", default="reports/bench-adapters.png", help="PNG chart path ('' for none)"
    )
    out.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    from contract.errors import ConfigError
    from gateway.bench.adapters import AdaptersBenchOptions, run_bench_adapters
    from gateway.bench.adapters_report import run_and_report
    from gateway.bench.workload import Workload

    dialects = [d.strip() for d in args.dialects.split(",") if d.strip()]
    unknown = [d for d in dialects if d not in BENCH_DIALECTS]
    if unknown or not dialects:
        raise ConfigError(
            "dialects", f"expected some of {', '.join(BENCH_DIALECTS)}; got {args.dialects!r}"
        )
    if args.rounds < 1:
        raise ConfigError("rounds", f"must be at least 1; got {args.rounds}")
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
        dialects=tuple(dict.fromkeys(dialects)),
        rounds=args.rounds,
        storage_only=args.storage_only,
        command=shlex.join(["sensorgate", *sys.argv[1:]]),
        settle_s=args.settle,
        timeout_s=args.timeout,
    )
    return run_and_report(
        lambda progress: run_bench_adapters(options, progress),
        out=args.out,
        chart_path=args.chart or None,
        as_json=args.json,
    )
