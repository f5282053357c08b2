"""``sensorgate fuzz``: the command line of :mod:`gateway.fuzz.run`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["format_table", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``fuzz`` command."""
    fuzz = subparsers.add_parser(
        "fuzz",
        help="push a seeded corpus of hostile messages through a real broker and gateway",
        description="Start mosquitto, influxd and the gateway; publish a seeded mix of valid"
        " telemetry, duplicates, bytes that are not UTF-8, truncated and deeply nested JSON,"
        " schema violations, NaN and inf, numbers beyond a double, other devices' topics, bad"
        " topic ids, oversize payloads, times out of range, and status and command garbage;"
        " wait until the gateway has accounted for every message, and print what it counted"
        " beside what it had to count. Exit 1 on a crash, anything unaccounted or any count"
        " that differs.",
    )
    fuzz.add_argument(
        "--messages", type=int, default=100_000, help="messages to publish (default 100000)"
    )
    fuzz.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    fuzz.add_argument("--devices", type=int, default=200, help="devices in the corpus")
    fuzz.add_argument(
        "--timeout", type=float, default=600.0, help="longest wait for the gateway (s)"
    )
    fuzz.add_argument("--json", action="store_true", help="print the report as JSON")
    fuzz.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    fuzz.add_argument("--keep", action="store_true", help="keep the services' folder and logs")
    fuzz.set_defaults(func=_cmd_fuzz)


def _cmd_fuzz(args: argparse.Namespace) -> int:
    from gateway.bench.render import write_report
    from gateway.fuzz.run import FuzzOptions, run_fuzz

    def progress(line: str) -> None:
        print(f"[fuzz] {line}", file=sys.stderr, flush=True)

    options = FuzzOptions(
        messages=args.messages,
        seed=args.seed,
        devices=args.devices,
        timeout_s=args.timeout,
        keep=args.keep,
    )
    command = (
        "sensorgate fuzz " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "sensorgate fuzz"
    )
    report = run_fuzz(options, command=command.strip(), progress=progress)
    doc = report.as_dict()
    if args.out is not None:
        write_report(args.out, json.dumps(doc, indent=2))
    print(json.dumps(doc, indent=2) if args.json else format_table(doc))
    return 0 if report.ok else 1


def format_table(doc: dict[str, Any]) -> str:
    """Render a report (``FuzzReport.as_dict()``) as a Markdown table."""
    lines = ["| | counted | expected |", "|---|---:|---:|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in _count_rows(doc)]
    lines += ["", "| generator category | messages | expected verdict |", "|---|---:|---|"]
    cats = doc.get("reasons_by_category", {})
    for cat, n in doc.get("by_category", {}).items():
        verdict = cats.get(cat) or {}
        text = ", ".join(f"{r} {c:,}" for r, c in verdict.items()) or (
            "duplicate" if cat == "duplicate" else "accepted"
        )
        lines.append(f"| {cat} | {n:,} | {text} |")
    status = "PASS" if doc.get("ok") else "FAIL"
    lines += ["", f"{status}: publish {doc['publish_s']} s, accounted for {doc['drain_s']} s later"]
    lines += [f"mismatch: {m}" for m in doc.get("mismatches") or []]
    if doc.get("error"):
        lines.append(f"error: {doc['error']}")
    return "\n".join(lines)


def _count_rows(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Each count the gateway reached beside the one it had to reach."""
    exp, gw, on_mqtt = doc["expected"], doc["gateway"], doc["deadletters_on_mqtt"]
    same = gw.get("duplicate_readings") == exp.get("duplicate_readings")
    dups = exp.get("duplicates", 0) if same else 0  # messages: known when the readings agree
    received = int(doc["published"]) - int(doc["unaccounted"])
    rows = [
        ("published (PUBACKed)", f"{doc['published']:,} ({doc['acknowledged']:,})", ""),
        (
            "received (accepted + duplicates + dead letters)",
            f"{received:,}",
            f"{doc['published']:,}",
        ),
        ("accepted messages", f"{gw.get('accepted', 0):,}", f"{exp.get('accepted', 0):,}"),
        ("readings in", f"{gw.get('readings', 0):,}", f"{exp.get('readings', 0):,}"),
        (
            "stored readings (InfluxDB)",
            f"{doc['stored_readings']:,}",
            f"{exp.get('readings', 0):,}",
        ),
        (
            "duplicates (messages / readings)",
            f"{dups:,} / {gw.get('duplicate_readings', 0):,}",
            f"{exp.get('duplicates', 0):,} / {exp.get('duplicate_readings', 0):,}",
        ),
    ]
    letters, want = gw.get("deadletters", {}), exp.get("deadletters", {})
    rows += [
        (
            f"dead letters: {reason} (metric / on MQTT)",
            f"{letters.get(reason, 0):,} / {on_mqtt.get(reason, 0):,}",
            f"{want.get(reason, 0):,}",
        )
        for reason in sorted(set(letters) | set(want))
    ]
    died = 0 if doc["gateway_alive"] else 1
    crashes = f"{doc['crashes']} ({gw.get('shard_errors', 0)} + {died})"
    rows.append(("crashes (shard errors + gateway deaths)", crashes, "0"))
    rows.append(("unaccounted", f"{doc['unaccounted']:,}", "0"))
    return rows
