"""Print, save and chart the results of ``sensorgate bench-adapters``.

One table (rich) with a row per dialect, the JSON report (``--out``) and a PNG chart
(``--chart``): readings/s per core of the gateway and end-to-end readings/s per
dialect, bars at the median with whiskers from the lowest to the highest round, the
native baseline in grey.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from gateway.bench import render
from gateway.bench.adapters_results import AdaptersReport
from gateway.bench.render import fmt, save_figure, spread_text, stored_text, subplots, whisker_bars

__all__ = ["build_table", "chart", "exit_code", "problems", "run_and_report"]


def build_table(report: AdaptersReport) -> Table:
    """Return the summary table: one row per dialect."""
    bench = report.bench
    w = bench.workload
    table = Table(
        title=f"sensorgate bench-adapters: {w['devices']:,} devices, up to"
        f" {w['readings_per_message']} readings/message, ~{w['total']:,} readings per round,"
        f" QoS {w['qos']}, {w['rules']} rules · {bench.rounds} round(s)",
    )
    table.caption = (
        "readings/s end to end: first publish -> last reading stored in influxd. Gateway CPU:"
        " its whole process tree, start of the burst -> last reading stored. Per core:"
        " readings / gateway CPU seconds. x native: per core / the native baseline's."
    )
    table.add_column("dialect", justify="left")
    table.add_column("readings\n/message", justify="right")
    table.add_column("messages\n/round", justify="right")
    table.add_column("stored / expected", justify="right")
    table.add_column("readings/s end to end\nmedian (min-max)", justify="right")
    table.add_column("gateway CPU s\nper 1 M readings", justify="right")
    table.add_column("readings/s\nper core", justify="right")
    table.add_column("x native", justify="right")
    table.add_column("influxd CPU s\nper 1 M", justify="right")
    table.add_column("dead\nletters", justify="right")
    for s in report.dialects:
        table.add_row(
            s.dialect,
            fmt(s.readings_per_message),
            fmt(s.messages),
            stored_text(s.stored, s.expected),
            spread_text(s.rate),
            spread_text(s.gateway_cpu_s_per_m, 1),
            spread_text(s.per_core),
            fmt(s.per_core_to_native, 2, "x"),
            spread_text(s.influxd_cpu_s_per_m, 1),
            fmt(s.deadletters),
        )
    return table


def problems(report: AdaptersReport) -> list[str]:
    """Return every failure, loss and dead letter, one line each (never hidden)."""
    out = []
    for r in report.bench.results:
        if r.error:
            out.append(f"{r.peer} round {r.round}: {r.error}")
        elif r.lost:
            out.append(f"{r.peer} round {r.round}: stored {r.stored:,} of {r.expected:,} readings")
        letters = r.extras.get("deadletters")
        if letters:
            out.append(f"{r.peer} round {r.round}: the gateway rejected {letters:,.0f} messages")
    return out


def exit_code(report: AdaptersReport) -> int:
    """1 if a round failed, lost readings or had dead letters; else 0."""
    return 1 if problems(report) else 0


def chart(report: AdaptersReport, path: Path) -> None:
    """Draw readings/s per core and end-to-end readings/s per dialect as a PNG."""
    rows = [s for s in report.dialects if s.per_core[0] is not None]
    names = [f"{s.dialect}\n({s.readings_per_message}/msg)" for s in rows]
    colors = ["#a0aec0" if s.dialect == "native" else "#2b6cb0" for s in rows]
    fig, (ax_core, ax_rate) = subplots(13)
    whisker_bars(
        ax_core,
        names,
        [s.per_core for s in rows],
        colors,
        "gateway readings/s per core (median, min-max)",
        "readings per gateway CPU second",
    )
    whisker_bars(
        ax_rate,
        names,
        [s.rate for s in rows],
        colors,
        "end-to-end rate (median, min-max)",
        "readings/s, first publish to last stored",
    )
    bench = report.bench
    w = bench.workload
    save_figure(
        fig,
        path,
        f"sensorgate bench-adapters: ~{w['total']:,} readings per round, {w['devices']:,}"
        f" devices, {bench.rounds} round(s) · {bench.machine.get('cpus')} cores ·"
        f" {bench.started_at}",
    )


def _show(report: AdaptersReport, console: Console) -> None:
    console.print(build_table(report))
    for line in problems(report):
        console.print(f"[bold red]{line}[/bold red]")


def _json(report: AdaptersReport) -> str:
    return json.dumps(report.as_dict(), indent=2)


run_and_report = render.Reporter(_json, _show, exit_code, chart).run_and_report
"""Run the benchmark, print progress and a table (or JSON), write the JSON and chart."""
