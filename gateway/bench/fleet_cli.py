"""``sensorgate bench-fleet``: fleets with one MQTT connection per device, measured.

Runs the issue's workloads (20,000 devices x 1 reading per 10 s, and 5,000 x 1/s)
on the asyncio runner and, beside it in the same run, the thread runner, each case
on a fresh local mosquitto and in a child process of its own (see
:mod:`gateway.bench.fleet`). Prints progress on stderr, a summary table at the end,
writes JSON (``--out``) and a PNG chart (``--chart``). Exit 1 if an asyncio case
missed the targets (20,000 connected below half a core, PUBACK p99 below 250 ms).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.bench.fleet import FleetWorkload

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench-fleet`` to a ``sensorgate`` parser."""
    p = subparsers.add_parser(
        "bench-fleet",
        help="per-device MQTT fleets: connections held, PUBACK latency, CPU, RSS",
        description="Run 20,000 devices x 1 reading per 10 s and 5,000 x 1/s, one MQTT"
        " connection each, on the asyncio runner and on the thread runner, each on a fresh"
        " local mosquitto. Reports connections held, publish-to-PUBACK p50/p99, CPU share"
        " and peak RSS of the simulator, and the broker's CPU. See docs/simulators.md.",
    )
    p.add_argument(
        "--workloads",
        default="20k-every-10s,5k-every-1s",
        help="comma-separated: 20k-every-10s, 5k-every-1s, or DEVICESxINTERVAL such as"
        " 1000x1 (default: the issue's two)",
    )
    p.add_argument("--runners", default="asyncio,threads", help="comma-separated (asyncio,threads)")
    p.add_argument(
        "--duration",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds of schedule per case, after the ramp-up (60)",
    )
    p.add_argument(
        "--ramp-rate", type=float, default=500.0, metavar="N", help="connections/s (500)"
    )
    p.add_argument(
        "--housekeeping",
        type=float,
        default=None,
        metavar="S",
        help="asyncio: seconds between keepalive checks per connection (default: a third of"
        " the keepalive; 1 is aiomqtt's own)",
    )
    p.add_argument("--out", default="reports/bench-fleet.json", help="JSON report path")
    p.add_argument(
        "--chart", default="reports/bench-fleet.png", help="PNG chart path ('' for none)"
    )
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    p.set_defaults(func=_cmd)


def _workloads(text: str) -> tuple[FleetWorkload, ...]:
    from contract.errors import ConfigError
    from gateway.bench.fleet import WORKLOADS, FleetWorkload

    named = {w.name: w for w in WORKLOADS}
    out: list[FleetWorkload] = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        if item in named:
            out.append(named[item])
            continue
        devices, sep, interval = item.partition("x")
        try:
            out.append(FleetWorkload(item, int(devices), float(interval)))
        except ValueError:
            raise ConfigError(
                "workloads", f"expected {', '.join(named)} or DEVICESxINTERVAL; got {item!r}"
            ) from None
        if not sep:
            raise ConfigError("workloads", f"expected DEVICESxINTERVAL; got {item!r}")
    return tuple(out)


def _cmd(args: argparse.Namespace) -> int:
    from contract.errors import ConfigError
    from gateway.bench.fleet import FleetBenchOptions, run_bench_fleet
    from gateway.bench.fleet_report import (
        TARGET_CPU_SHARE,
        TARGET_P99_S,
        summary,
        write_and_print,
    )

    runners = tuple(r.strip() for r in args.runners.split(",") if r.strip())
    if not runners or set(runners) - {"asyncio", "threads"}:
        raise ConfigError("runners", f"expected asyncio and/or threads; got {args.runners!r}")
    options = FleetBenchOptions(
        workloads=_workloads(args.workloads),
        runners=runners,
        duration_s=args.duration,
        ramp_rate=args.ramp_rate,
        housekeeping_s=args.housekeeping,
        command=shlex.join(["sensorgate", *sys.argv[1:]]),
    )
    report = run_bench_fleet(options, lambda m: print(m, file=sys.stderr, flush=True))
    write_and_print(
        report,
        out=Path(args.out),
        chart=Path(args.chart) if args.chart else None,
        as_json=args.json,
    )
    missed = [
        s
        for s in map(summary, report.cases)
        if s["runner"] == "asyncio"
        and (
            s["error"]
            or (s["devices"] >= 20_000 and (s["cpu_share"] or 1.0) >= TARGET_CPU_SHARE)
            or (s["puback_p99_s"] or 1.0) >= TARGET_P99_S
        )
    ]
    return 1 if missed else 0
