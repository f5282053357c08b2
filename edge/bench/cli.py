"""``sensorgate edge bench``: run the phases, check the targets, print the report."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.bench.backlog import backlog
from edge.bench.phases import footprint, outbox_inserts, unconstrained
from edge.bench.probes import Broker

__all__ = ["add_arguments", "cmd_bench", "main", "run_bench", "table"]

TARGET_RSS_MB = 40.0
TARGET_CPU_PERCENT = 2.0
TARGET_READINGS_PER_S = 20_000.0


def run_bench(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Run the three phases; return the JSON document."""
    with tempfile.TemporaryDirectory(prefix="sg-edge-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        broker = Broker(args.host, args.port, work)
        try:
            log("outbox: numbered inserts per second ...")
            ob = outbox_inserts(work)
            log(f"footprint: 10 sensors x 1 Hz for {args.footprint_s:.0f} s ...")
            fp = footprint(broker, work, seconds=args.footprint_s, warmup_s=args.warmup_s)
            log(f"unconstrained: {args.unconstrained_s:.0f} s ...")
            mx = unconstrained(
                broker,
                work,
                seconds=args.unconstrained_s,
                warmup_s=3.0,
                sensors=args.max_sensors,
            )
            log(f"backlog: {args.backlog_minutes:g} min x {args.backlog_rate:g} readings/s ...")
            paced = backlog(
                broker, work, minutes=args.backlog_minutes, rate=args.backlog_rate, max_rate=50
            )
            free = backlog(
                broker, work, minutes=args.backlog_minutes, rate=args.backlog_rate, max_rate=0
            )
        finally:
            broker.stop()
    checks = [
        ("RSS at 10 readings/s", fp["rss_mb_max"], "MB", f"< {TARGET_RSS_MB:g}",
         fp["rss_mb_max"] < TARGET_RSS_MB),
        ("CPU at 10 readings/s", fp["cpu_percent_of_one_core"], "% of one core",
         f"< {TARGET_CPU_PERCENT:g}", fp["cpu_percent_of_one_core"] < TARGET_CPU_PERCENT),
        ("max sustained, PUBACKed", mx["readings_per_s_acked"], "readings/s",
         f">= {TARGET_READINGS_PER_S:,.0f}", mx["readings_per_s_acked"] >= TARGET_READINGS_PER_S),
    ]  # fmt: skip
    return {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "broker": {"host": broker.host, "port": broker.port, "own_mosquitto": broker.own},
        "outbox": ob,
        "footprint": fp,
        "unconstrained": mx,
        "backlog": {"default_max_rate": paced, "unlimited": free},
        "targets": [
            {"what": w, "value": v, "unit": u, "target": t, "pass": bool(ok)}
            for w, v, u, t, ok in checks
        ],
        "pass": all(ok for *_x, ok in checks),
    }


def table(doc: dict[str, Any]) -> str:
    """Format the human summary: targets with pass/fail, then the drain figures."""
    rows = [("figure", "measured", "target", "")]
    for t in doc["targets"]:
        value = f"{t['value']:,}" if isinstance(t["value"], int) else f"{t['value']:g}"
        rows.append(
            (t["what"], f"{value} {t['unit']}", t["target"], "PASS" if t["pass"] else "FAIL")
        )
    for key, label in (("default_max_rate", "max_rate 50/s"), ("unlimited", "max_rate 0")):
        b = doc["backlog"][key]
        rows.append(
            (
                f"backlog drain, {label}",
                f"{b['drain_readings_per_s']:,} readings/s ({b['drain_events_per_s']:g} events/s)",
                "(no target)",
                f"{b['backlog_readings']:,} readings in {b['drain_s']:g} s",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    mx = doc["unconstrained"]
    fp = doc["footprint"]
    lines += [
        "",
        f"footprint: {fp['measured_s']} s measured after {fp['warmup_s']} s warm-up,"
        f" RSS mean {fp['rss_mb_mean']} MB ({fp['meter']})",
        f"unconstrained: {mx['readings_per_s_sampled']:,} readings/s sampled,"
        f" {mx['events_per_s_acked']:,} events/s acked x {mx['readings_per_event']:g},"
        f" outbox grew {mx['outbox_depth_growth_events']} events, agent CPU"
        f" {mx['cpu_percent_of_one_core']}% of one core, RSS {mx['rss_mb']} MB",
        "overall: " + ("PASS" if doc["pass"] else "FAIL"),
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the bench options (shared by ``sensorgate edge bench`` and ``python -m``)."""
    parser.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help="a running broker's port (default: start our own mosquitto)"
    )
    parser.add_argument("--json", action="store_true", help="print the JSON document")
    parser.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON here")
    parser.add_argument("--footprint-s", type=float, default=30.0)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--unconstrained-s", type=float, default=15.0)
    parser.add_argument(
        "--max-sensors",
        type=int,
        default=1000,
        help="simulated sensors in the unconstrained phase (each sampled every 10 ms)",
    )
    parser.add_argument("--backlog-minutes", type=float, default=10.0)
    parser.add_argument("--backlog-rate", type=float, default=100.0, help="readings/s")
    parser.add_argument(
        "--quick", action="store_true", help="short phases (a smoke run, not the figures)"
    )


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the bench; print the table (or JSON); exit 0 when every target is met."""
    if args.quick:
        args.footprint_s, args.warmup_s, args.unconstrained_s = 3.0, 1.0, 3.0
        args.backlog_minutes = min(args.backlog_minutes, 1.0)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from contract.errors import ServiceError, exit_code_for

    try:
        doc = run_bench(args, log)
    except ServiceError as exc:  # our mosquitto is not installed or did not start
        print(f"error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    text = json.dumps(doc, indent=2)
    print(text if args.json else table(doc))
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0 if doc["pass"] else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m edge.bench`` (the same as ``sensorgate edge bench``)."""
    parser = argparse.ArgumentParser(prog="python -m edge.bench")
    add_arguments(parser)
    return cmd_bench(parser.parse_args(argv))
