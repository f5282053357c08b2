"""``sensorgate bench-cluster``: the command line of :mod:`gateway.bench.scaling`.

Kept apart so that building the parser imports nothing heavy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway.bench import cli_options as opts

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``sensorgate bench-cluster`` to the command line."""
    p = sub.add_parser(
        "bench-cluster",
        help="one burst through 1, 2, 3 gateway processes: throughput and CPU per reading",
        description="Per round and process count, on fresh mosquitto and influxd: run"
        " `sensorgate cluster -n N` on loopback, publish the burst (default: 1,000 devices,"
        " 50 readings per QoS 1 message, 500,000 readings), wait until influxd has stored"
        " it, and report stored/expected, end-to-end readings/s, the cluster's CPU per"
        " reading and each process's CPU per reading it decoded, beside the messages each"
        " took from the broker. On fewer cores than processes this shows correctness and"
        " overhead, not speed-up. Writes a JSON report. See docs/scaling.md.",
    )
    p.add_argument(
        "--processes",
        default="1,2,3",
        metavar="LIST",
        help="comma-separated process counts (default 1,2,3)",
    )
    p.add_argument("-w", "--workers", type=int, default=1, help="workers per process (1)")
    opts.add_rounds(p, "the counts")
    p.add_argument("--devices", type=int, default=1_000, metavar="N", help="devices (1,000)")
    p.add_argument(
        "--readings-per-message", type=int, default=50, metavar="N", help="1 ms apart (50)"
    )
    p.add_argument("--total", type=int, default=500_000, metavar="N", help="readings (500,000)")
    opts.add_storage_only(p)
    opts.add_settle(p)
    p.add_argument(
        "--idle",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds of each process's idle CPU, before the burst (5; 0: skip)",
    )
    opts.add_out(p, "reports/bench-cluster.json")
    opts.add_json(p)
    p.set_defaults(func=_cmd_bench_cluster)


def _cmd_bench_cluster(args: argparse.Namespace) -> int:
    from contract.errors import ConfigError
    from gateway.bench.render import write_report
    from gateway.bench.scaling import ScalingOptions, run_scaling
    from gateway.bench.workload import SCENARIOS, with_overrides

    try:
        counts = tuple(int(c) for c in args.processes.split(",") if c.strip())
    except ValueError:
        raise ConfigError(
            "processes", f"expected numbers like 1,2,3; got {args.processes!r}"
        ) from None
    if not counts or min(counts) < 1:
        raise ConfigError("processes", f"expected numbers >= 1; got {args.processes!r}")
    opts.require_rounds(args.rounds)
    workload = with_overrides(
        SCENARIOS["peer"].workload,
        devices=args.devices,
        readings_per_message=args.readings_per_message,
        total=args.total,
    )
    options = ScalingOptions(
        workload=workload,
        process_counts=counts,
        rounds=args.rounds,
        workers=args.workers,
        storage_only=args.storage_only,
        settle_s=args.settle,
        idle_s=args.idle,
        command=opts.command_line(),
    )

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    report = run_scaling(options, progress)
    doc = report.as_dict()
    out = Path(args.out)
    write_report(out, json.dumps(doc, indent=2))
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(_table(doc))
        print(f"JSON report: {out}")
    failed = any(r["error"] for r in doc["results"])
    lost = any(s["lost"] for s in doc["summaries"])
    return 1 if failed or lost else 0


def _fmt(figure: dict[str, Any], digits: int = 2) -> str:
    if figure["median"] is None:
        return "-"
    if figure["min"] == figure["max"]:
        return f"{figure['median']:,.{digits}f}"
    return (
        f"{figure['median']:,.{digits}f} ({figure['min']:,.{digits}f}-{figure['max']:,.{digits}f})"
    )


def _table(doc: dict[str, Any]) -> str:
    lines = [
        f"{doc['workload']['total']:,} readings, {doc['rounds']} round(s), machine:"
        f" {doc['machine']['cpus']} CPU(s); median (min-max)",
        "processes | lost | readings/s | gateway CPU µs/reading | influxd µs/reading"
        " | mosquitto µs/reading | per process: idle share of a core; CPU µs per reading"
        " stored; per reading decoded [share of messages received / readings decoded]",
    ]
    for s in doc["summaries"]:
        per = "; ".join(
            f"p{p['index']} {_fmt(p['idle_cpu_share'], 3)}; {_fmt(p['cpu_us_per_reading'])};"
            f" {_fmt(p['cpu_us_per_decoded_reading'])}"
            f" [{_fmt(p['received_share'], 2)} / {_fmt(p['decoded_share'], 2)}]"
            for p in s["per_process"]
        )
        lines.append(
            f"{s['processes']} | {s['lost']} | {_fmt(s['readings_per_s'], 0)}"
            f" | {_fmt(s['gateway_cpu_us_per_reading'])}"
            f" | {_fmt(s['influxd_cpu_us_per_reading'])}"
            f" | {_fmt(s['mosquitto_cpu_us_per_reading'])} | {per}"
        )
    return "\n".join(lines)
