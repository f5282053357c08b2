"""``sensorgate chaos``: the command line of :mod:`gateway.chaos.run`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["format_table", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``chaos`` command."""
    chaos = subparsers.add_parser(
        "chaos",
        help="steady load through edge agents while the gateway, influxd, the broker and an"
        " agent are killed or stopped; then count what was lost",
        description="Start mosquitto, influxd, the gateway, one edge agent process and a"
        " simulated fleet of agents; offer --rate readings/s for --minutes while, on a"
        " schedule, the gateway is SIGKILLed (twice), influxd is stopped for 60 s, the broker"
        " for 20 s and the edge agent is SIGKILLed (each restarted on the same port, data and"
        " outbox). Then drain, and print per device the readings published (edge outboxes),"
        " stored (InfluxDB), lost, duplicated in the windows, late; dead letters by reason;"
        " restarts; and peak RSS, with an RSS-over-time PNG. Exit 1 when anything was lost"
        " or the gateway died outside a fault (a crash).",
    )
    chaos.add_argument("--minutes", type=float, default=10.0, help="length of the load phase")
    chaos.add_argument(
        "--rate",
        type=float,
        default=5_000.0,
        help="readings/s offered by all devices together (default 5000; see docs/hardening.md)",
    )
    chaos.add_argument("--devices", type=int, default=5, help="devices (1 edge process + fleet)")
    chaos.add_argument("--influx-down", type=float, default=60.0, help="influxd outage (s)")
    chaos.add_argument("--broker-down", type=float, default=20.0, help="broker outage (s)")
    chaos.add_argument(
        "--share-group",
        default="",
        metavar="NAME",
        help="the gateway's MQTT share group (default none: plain subscriptions, which"
        " mosquitto 2.0 keeps across its restart; give one to see what it loses without)",
    )
    chaos.add_argument(
        "--no-faults",
        action="store_true",
        help="run the same load and accounting with no fault at all (no kill, no outage): the"
        " report's achieved rate and outbox backlog at the end then tell whether this machine"
        " sustains --rate",
    )
    chaos.add_argument("--plot", type=Path, default=None, help="write the RSS plot (PNG) here")
    chaos.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    chaos.add_argument("--workdir", type=Path, default=None, help="keep everything here")
    chaos.add_argument("--json", action="store_true", help="print the report as JSON")
    chaos.set_defaults(func=_cmd_chaos)


def _cmd_chaos(args: argparse.Namespace) -> int:
    from contract.errors import ExitCode
    from gateway.bench.render import write_report
    from gateway.chaos.run import ChaosOptions, dumps, run_chaos

    def progress(line: str) -> None:
        print(f"[chaos] {line}", file=sys.stderr, flush=True)

    if args.devices < 2:
        print("error: --devices must be at least 2 (an edge process and a fleet)", file=sys.stderr)
        return ExitCode.REFUSED
    options = ChaosOptions(
        minutes=args.minutes,
        rate=args.rate,
        devices=args.devices,
        influx_down_s=args.influx_down,
        broker_down_s=args.broker_down,
        share_group=args.share_group,
        workdir=args.workdir,
        plot=args.plot,
        faults=not args.no_faults,
    )
    command = " ".join(["sensorgate chaos", *sys.argv[2:]])
    try:
        report = run_chaos(options, command=command, progress=progress)
    except ValueError as exc:  # a schedule that does not fit the run
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.REFUSED
    if args.out is not None:
        write_report(args.out, dumps(report))
    print(dumps(report) if args.json else format_table(report))
    return ExitCode.OK if report["ok"] else ExitCode.FAILED


def format_table(report: dict[str, Any]) -> str:
    """Render a chaos report as Markdown tables."""
    lines = [
        "| device | events | published | stored | lost | duplicates | late | dropped at edge |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d in report.get("devices_detail", []):
        lines.append(
            f"| {d['device']} | {d['events']:,} | {d['published']:,} | {d['stored']:,} |"
            f" {d['lost']:,} | {d['duplicates']:,} | {d['late']:,} | {d['dropped']:,} |"
        )
    t = report.get("totals")
    if t:
        lines.append(
            f"| **all** | {t['events']:,} | {t['published']:,} | {t['stored']:,} |"
            f" **{t['lost']:,}** | **{t['duplicates']:,}** | {t['late']:,} | {t['dropped']:,} |"
        )
    letters = report.get("deadletters") or {}
    lines += [
        "",
        "| | |",
        "|---|---|",
        f"| dead letters by reason | {_pairs(letters) or 'none'} |",
        f"| gateway restarts (SIGKILL) | {report['gateway_restarts']} |",
        f"| gateway dead outside a fault (crashed) |"
        f" {', '.join(_span(c) for c in report.get('gateway_crashes') or []) or 'never'} |",
        f"| edge agent restarts (SIGKILL) | {report['edge_restarts']} |",
        f"| faults | {', '.join(_fault(f) for f in report['faults']) or 'none'} |",
        f"| peak RSS (MiB) | {_pairs(report.get('rss_mb_peak') or {})} |",
        f"| wall time | {report['wall_s']:,.0f} s |",
    ]
    load = report.get("load")
    if load:
        drain = "?" if load["drain_s"] is None else f"{load['drain_s']:,.0f} s"
        lines += [
            f"| readings/s offered / achieved (made durable at the edge) |"
            f" {report['rate']:,.0f} / {load['achieved_rate']:,.0f} |",
            f"| left in the outboxes when the load ended | {load['backlog_events_at_end']:,}"
            f" events ({load['backlog_readings_at_end']:,} readings) |",
            f"| all stored, after the load ended | {drain} |",
        ]
    for d in report.get("spill_drain") or []:
        empty = d["spill_empty_after_s"]
        lines.append(
            f"| gateway spill during influxd outage | peak {d['spill_peak_points']:,} points,"
            f" empty {'never' if empty is None else f'{empty:,.0f} s'} after influxd was back |"
        )
    if t:
        lines.append(f"| readings still in open windows at the end | {t['unfolded']:,} |")
    if report.get("plot"):
        lines.append(f"| RSS over time | {report['plot']} |")
    status = "PASS" if report.get("ok") else "FAIL"
    crashes = len(report.get("gateway_crashes") or [])
    lines += ["", f"{status}: lost {t['lost'] if t else '?'} readings, gateway crashes {crashes}"]
    lines += [f"gateway log: {line}" for line in report.get("gateway_errors") or []]
    if report.get("error"):
        lines.append(f"error: {report['error']}")
    return "\n".join(lines)


def _pairs(items: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in sorted(items.items())
    )


def _span(c: dict[str, Any]) -> str:
    return f"{c['from_s']:.0f}-{c['to_s']:.0f} s"


def _fault(f: dict[str, Any]) -> str:
    return f"{f['action']} {f['from_s']:.0f}-{f['to_s']:.0f} s"
