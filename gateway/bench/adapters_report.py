"""Print, save and chart the results of ``sensorgate bench-adapters``.

One table (rich) with a row per dialect, the JSON report (``--out``) and a PNG chart
(``--chart``): readings/s per core of the gateway and end-to-end readings/s per
dialect, bars at the median with whiskers from the lowest to the highest round, the
native baseline in grey.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from gateway.bench.adapters_results import AdaptersReport, DialectSummary, Spread

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["build_table", "chart", "exit_code", "problems", "run_and_report"]


def _fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def _range(spread: Spread, digits: int = 0) -> str:
    median, low, high = spread
    if median is None:
        return "-"
    if low is None or high is None or low == high:
        return _fmt(median, digits)
    return f"{_fmt(median, digits)} ({_fmt(low, digits)}-{_fmt(high, digits)})"


def _stored(s: DialectSummary) -> str:
    if s.stored is None:
        return f"? / {s.expected:,}"
    text = f"{s.stored:,} / {s.expected:,}"
    if s.lost:
        text += f"  LOST {s.lost:,}"
    return text


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
            _fmt(s.readings_per_message),
            _fmt(s.messages),
            _stored(s),
            _range(s.rate),
            _range(s.gateway_cpu_s_per_m, 1),
            _range(s.per_core),
            _fmt(s.per_core_to_native, 2, "x"),
            _range(s.influxd_cpu_s_per_m, 1),
            _fmt(s.deadletters),
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s for s in report.dialects if s.per_core[0] is not None]
    names = [f"{s.dialect}\n({s.readings_per_message}/msg)" for s in rows]
    colors = ["#a0aec0" if s.dialect == "native" else "#2b6cb0" for s in rows]
    fig, (ax_core, ax_rate) = plt.subplots(1, 2, figsize=(13, 4.8), dpi=100)

    def bars(ax: Axes, spreads: list[Spread], title: str, ylabel: str) -> None:
        mid = [sp[0] or 0.0 for sp in spreads]
        low = [m - (sp[1] if sp[1] is not None else m) for m, sp in zip(mid, spreads, strict=True)]
        high = [(sp[2] if sp[2] is not None else m) - m for m, sp in zip(mid, spreads, strict=True)]
        drawn = ax.bar(names, mid, yerr=[low, high], capsize=4, color=colors)
        ax.bar_label(drawn, labels=[f"{v:,.0f}" for v in mid], padding=3)
        ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:,.0f}")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.margins(y=0.15)

    bars(
        ax_core,
        [s.per_core for s in rows],
        "gateway readings/s per core (median, min-max)",
        "readings per gateway CPU second",
    )
    bars(
        ax_rate,
        [s.rate for s in rows],
        "end-to-end rate (median, min-max)",
        "readings/s, first publish to last stored",
    )
    bench = report.bench
    w = bench.workload
    fig.suptitle(
        f"sensorgate bench-adapters: ~{w['total']:,} readings per round, {w['devices']:,}"
        f" devices, {bench.rounds} round(s) · {bench.machine.get('cpus')} cores ·"
        f" {bench.started_at}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def run_and_report(
    run: Callable[[Callable[[str], None]], AdaptersReport],
    *,
    out: str,
    chart_path: str | None,
    as_json: bool,
) -> int:
    """Run the benchmark, print progress and a table (or JSON), write the JSON and chart."""
    console = Console(stderr=as_json)
    if not console.is_terminal:
        console.width = 170  # a log file or a pipe: do not squeeze the table
    report = run(lambda m: console.print(f"[dim]… {m}[/dim]", highlight=False))
    text = json.dumps(report.as_dict(), indent=2)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text + "\n")
    if chart_path:
        chart(report, Path(chart_path))
    if as_json:
        sys.stdout.write(text + "\n")
    console.print(build_table(report))
    for line in problems(report):
        console.print(f"[bold red]{line}[/bold red]")
    console.print(f"report: {out}" + (f", chart: {chart_path}" if chart_path else ""))
    return exit_code(report)
