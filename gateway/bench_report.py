"""Print, save and chart the results of ``sensorgate bench``."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from gateway.bench import SCENARIOS, BenchReport, report_json, run_bench

__all__ = ["chart", "run_and_report"]


def _fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def print_table(report: BenchReport, console: Console) -> None:
    """Print one row per scenario and the baseline comparison."""
    table = Table(title="sensorgate bench")
    for column in (
        "scenario",
        "target",
        "series",
        "published/s",
        "stored/s",
        "limited by",
        "p50 arrival→stored",
        "p99 arrival→stored",
        "p99 event→stored",
        "peak RSS",
        "CPU (cores)",
    ):
        table.add_column(column, justify="right")
    for r in report.results:
        table.add_row(
            r.scenario,
            r.target,
            f"{r.series:,}",
            _fmt(r.published_readings_per_s),
            _fmt(r.sustained_readings_per_s),
            r.limited_by,
            _fmt(r.arrival_to_stored_p50_s, " s", 3),
            _fmt(r.arrival_to_stored_p99_s, " s", 3),
            _fmt(r.event_to_stored_p99_s, " s", 3),
            _fmt(r.gateway_peak_rss_mb, " MB"),
            _fmt(r.gateway_cpu_share, "", 2),
        )
    console.print(table)
    console.print(
        "alarm rules: " + (report.rules_file or "the defaults (adaptive detector on every series)")
    )
    if report.baseline:
        b = report.baseline
        console.print(
            f"baseline (paho on_message + influxdb-client, one write per message, scenario"
            f" {b['scenario']}): {b['sustained_readings_per_s']:,.0f} readings/s;"
            f" gateway on the same server: {b['gateway_sustained_readings_per_s']:,.0f}"
            f" readings/s; ratio {_fmt(b.get('ratio'), 'x', 1)}"
        )


def chart(report: BenchReport, path: Path) -> None:
    """Draw stored readings/s per scenario, with the baseline, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.scenario}\n{r.target}" for r in report.results]
    values = [r.sustained_readings_per_s for r in report.results]
    if report.baseline:
        labels.append(f"{report.baseline['scenario']}\nbaseline")
        values.append(report.baseline["sustained_readings_per_s"])
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    bars = ax.bar(labels, values, color=["#2b6cb0"] * len(report.results) + ["#a0aec0"])
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=3)
    for bar, result in zip(bars, report.results, strict=False):
        target = SCENARIOS[result.scenario].target_readings_per_s
        ax.hlines(
            target,
            bar.get_x(),
            bar.get_x() + bar.get_width(),
            colors="#c53030",
            linestyles="dashed",
            label="target" if bar is bars[0] else None,
        )
    ax.legend(loc="upper right")
    ax.set_ylabel("readings/s stored in InfluxDB")
    ax.set_title(f"sensorgate bench ({report.machine['cpus']} cores, {report.started_at})")
    ax.margins(y=0.15)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def run_and_report(
    *,
    scenarios: list[str],
    duration_s: float,
    baseline: bool,
    rules_file: str | None,
    out: str,
    chart_path: str | None,
    as_json: bool,
) -> int:
    """Run the benchmark, print a table (or JSON), write the JSON report and the chart."""
    console = Console(stderr=as_json)
    if not console.is_terminal:
        console.width = 170  # a log file or a pipe: do not squeeze the table
    report = run_bench(
        scenarios=scenarios,
        duration_s=duration_s,
        baseline=baseline,
        rules_file=rules_file,
        progress=lambda m: console.print(f"[dim]… {m}[/dim]"),
    )
    text = report_json(report)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text + "\n")
    if chart_path:
        chart(report, Path(chart_path))
    if as_json:
        sys.stdout.write(text + "\n")
    else:
        print_table(report, console)
        console.print(f"report: {out}" + (f", chart: {chart_path}" if chart_path else ""))
    return 0
