"""Print, save and chart the results of ``sensorgate bench-fleet``.

One table (rich) with a row per case, the JSON report, and a PNG chart: connections
held, CPU share and PUBACK p99 per case, asyncio runner beside the thread runner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gateway.bench.fleet import FleetBenchReport

__all__ = ["TARGET_CPU_SHARE", "TARGET_P99_S", "build_fleet_table", "fleet_chart", "summary"]

TARGET_CPU_SHARE = 0.5
TARGET_P99_S = 0.25


def summary(case: dict[str, Any]) -> dict[str, Any]:
    """Return the figures of one case that the table and chart show."""
    result = case["result"]
    conn = result.get("connections") or {}
    puback = result.get("puback") or {}
    wire = result.get("publish_to_puback") or {}
    steady = result.get("steady") or {}
    events = result.get("events")
    return {
        "workload": case["workload"],
        "runner": case["runner"],
        "devices": case["devices"],
        "held_after_ramp": conn.get("after_ramp"),
        "held_at_end": conn.get("at_end"),
        "ramp_s": conn.get("ramp_s"),
        "events": result.get("events"),
        "acknowledged": result.get("acknowledged"),
        "events_per_s": result.get("events_per_s"),
        "target_events_per_s": case["target_events_per_s"],
        "puback_p50_s": puback.get("p50_s"),
        "puback_p99_s": puback.get("p99_s"),
        "publish_to_puback_p99_s": wire.get("p99_s"),
        "lag_p99_s": (result.get("lag") or {}).get("p99_s"),
        "cpu_share": steady.get("cpu_share"),
        "cpu_per_event_us": round(steady["cpu_s"] / events * 1e6)
        if events and steady.get("cpu_s")
        else None,
        "waited_share": round(steady["run_queue_wait_s"] / steady["wall_s"], 2)
        if steady.get("wall_s") and "run_queue_wait_s" in steady
        else None,
        "peak_rss_mb": round(result["peak_rss_bytes"] / 1e6, 1)
        if result.get("peak_rss_bytes")
        else None,
        "broker_cpu_share": case["broker"]["cpu_share_of_case"],
        "error": result.get("error"),
        "stranded": result.get("stranded"),
        "load_1min": [(case.get("load_average") or {}).get(k, [None])[0] for k in ("start", "end")],
    }


def _fmt(value: Any, spec: str = ",", suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:{spec}}{suffix}"


def _ms(seconds: float | None) -> str:
    return _fmt(None if seconds is None else seconds * 1000, ",.0f")


_COLUMNS = (
    "workload",
    "runner",
    "held\nafter ramp",
    "held\nat end",
    "ramp s",
    "events/s\n(target)",
    "acked /\nevents",
    "PUBACK\np50 ms",
    "PUBACK\np99 ms",
    "PUBLISH->\nPUBACK p99",
    "lag\np99 ms",
    "CPU\ncores",
    "CPU/event\nµs",
    "waited\nfor CPU",
    "peak RSS\nMB",
    "broker\nCPU",
    "load\nstart-end",
)
"""The columns of :func:`build_fleet_table`, in order."""


def build_fleet_table(report: FleetBenchReport) -> Table:
    """Return one row per case."""
    table = Table(
        title=f"sensorgate bench-fleet · one MQTT connection per device · schedule"
        f" {report.options['duration_s']:g} s per case · load average at start"
        f" {report.machine.get('load_average_at_start')}",
        caption=f"CPU: the simulator process, CPU seconds / wall seconds of the schedule phase"
        f" (target < {TARGET_CPU_SHARE:g} core for 20,000 devices). PUBACK: queued to"
        f" acknowledged (asyncio) or publish() to acknowledged (threads); target p99 <"
        f" {TARGET_P99_S * 1000:.0f} ms. PUBLISH->PUBACK: asyncio only, without the wait in"
        " the device's queue. Lag: how late the schedule queued events (not in the PUBACK"
        " figures). CPU/event: the schedule's CPU seconds per event. Broker CPU: mosquitto"
        " over the whole case. Stranded:"
        " events queued on devices that never connected (the open-file limit). Waited for CPU:"
        " seconds the simulator's threads were ready but waited for a CPU, per wall second"
        " of the schedule (summed over threads; high means starved, not slow). Load: the"
        " machine's 1-minute load average at the start and end of the case (2 cores).",
    )
    for name in _COLUMNS:
        table.add_column(name, justify="left" if name in ("workload", "runner") else "right")
    for case in report.cases:
        s = summary(case)
        p50 = s["puback_p50_s"]
        p99 = s["puback_p99_s"]
        table.add_row(
            s["workload"],
            s["runner"] + (" (failed)" if s["error"] else ""),
            f"{_fmt(s['held_after_ramp'])} / {s['devices']:,}",
            _fmt(s["held_at_end"]),
            _fmt(s["ramp_s"], ",.1f"),
            f"{_fmt(s['events_per_s'], ',.0f')} ({s['target_events_per_s']:,.0f})",
            f"{_fmt(s['acknowledged'])} / {_fmt(s['events'])}"
            + (f" ({s['stranded']:,} stranded)" if s["stranded"] else ""),
            _fmt(None if p50 is None else p50 * 1000, ",.0f"),
            _fmt(None if p99 is None else p99 * 1000, ",.0f"),
            _ms(s["publish_to_puback_p99_s"]),
            _ms(s["lag_p99_s"]),
            _fmt(s["cpu_share"], ".2f"),
            _fmt(s["cpu_per_event_us"]),
            _fmt(s["waited_share"], ".2f"),
            _fmt(s["peak_rss_mb"], ",.0f"),
            _fmt(s["broker_cpu_share"], ".2f"),
            "-".join(_fmt(x, ".1f") for x in s["load_1min"]),
        )
    return table


def fleet_chart(report: FleetBenchReport, path: Path) -> None:
    """Draw connections held, CPU share and PUBACK p99 per case as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [summary(c) for c in report.cases]
    labels = [f"{r['workload']}\n{r['runner']}" for r in rows]
    colours = ["#2b6cb0" if r["runner"] == "asyncio" else "#a0aec0" for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), dpi=100)
    panels = (
        ("connections held at the end", [r["held_at_end"] for r in rows], "{:,.0f}", None),
        (
            "simulator CPU (cores), schedule phase",
            [r["cpu_share"] for r in rows],
            "{:.2f}",
            TARGET_CPU_SHARE,
        ),
        (
            "PUBACK p99 (ms)",
            [None if r["puback_p99_s"] is None else r["puback_p99_s"] * 1000 for r in rows],
            "{:,.0f}",
            TARGET_P99_S * 1000,
        ),
    )
    for ax, (title, values, fmt, target) in zip(axes, panels, strict=True):
        # A failed case has no figure: no bar and "failed", not a bar at zero.
        bars = ax.bar(labels, [v or 0 for v in values], color=colours)
        ax.bar_label(
            bars,
            labels=[
                ("failed" if r["error"] else "-") if v is None else fmt.format(v)
                for r, v in zip(rows, values, strict=True)
            ],
            padding=3,
        )
        if target is not None:
            ax.axhline(target, color="#c53030", linestyle="--", linewidth=1, label="target")
            ax.legend(loc="best")
        ax.set_title(title)
        ax.margins(y=0.15)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle("sensorgate bench-fleet: asyncio (blue) beside threads (grey)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def write_and_print(
    report: FleetBenchReport, *, out: Path, chart: Path | None, as_json: bool
) -> None:
    """Write the JSON (and the chart), then print the table or the JSON."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    if chart is not None:
        fleet_chart(report, chart)
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        Console(width=210).print(build_fleet_table(report))
        print(f"report: {out}" + (f"  chart: {chart}" if chart else ""))
