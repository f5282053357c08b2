"""Print, save and chart the results of ``sensorgate bench``.

One table (rich) with a row per peer, the JSON report (``--out``) and a PNG chart
(``--chart``): end-to-end readings/s and CPU seconds per million readings per peer, bars
at the median with whiskers from the lowest to the highest round.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from gateway.bench import render
from gateway.bench.render import (
    fmt,
    save_figure,
    spread_text,
    stored_text,
    subplots,
    whisker_bars,
    whiskers,
)
from gateway.bench.results import BenchReport, PeerSummary, Spread

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["build_table", "chart", "exit_code", "problems", "report_json", "run_and_report"]


def build_table(report: BenchReport) -> Table:
    """Return the summary table: one row per peer."""
    w = report.workload
    table = Table(
        title=f"sensorgate bench · {report.scenario}: {w['devices']:,} devices,"
        f" {w['readings_per_message']} readings/message, {w['total']:,} readings,"
        f" QoS {w['qos']} · {report.rounds} round(s)",
    )
    table.caption = (
        "readings/s: first publish -> last reading stored. CPU per 1 M readings: start of"
        " the burst -> last reading stored, or, marked +agg (the sensorgate peers), -> last"
        " aggregate stored (to the end of the wait if some never came): aggregates included."
        " MQTT client: the gateway's MQTT network thread, share of the gateway's CPU."
    )
    table.add_column("peer", justify="left")
    table.add_column("stored / expected", justify="right")
    table.add_column("readings/s end to end\nmedian (min-max)", justify="right")
    table.add_column("aggregates\nwritten / expected", justify="right")
    table.add_column("peer CPU s\nper 1 M", justify="right")
    table.add_column("influxd CPU s\nper 1 M", justify="right")
    table.add_column("influxd CPU\nx Node-RED's", justify="right")
    table.add_column("MQTT\nclient", justify="right")
    table.add_column("peak RSS", justify="right")
    table.add_column("of influxd\nceiling", justify="right")
    table.add_column("rate\nx Node-RED", justify="right")
    for s in report.summaries:
        span = " +agg" if "readings+aggregates" in s.cpu_spans else ""
        share = s.mqtt_client_cpu_share
        table.add_row(
            s.peer,
            stored_text(s.stored, s.expected, share=True),
            spread_text((s.rate_median, s.rate_min, s.rate_max)),
            _aggregates(s),
            spread_text(_peer_cpu(s), 1) + span,
            spread_text(_influxd_cpu(s), 1) + span,
            fmt(s.influxd_cpu_to_nodered, 2, "x"),
            fmt(None if share is None else share * 100, 0, "%"),
            fmt(s.peak_rss_mb, 0, " MB"),
            fmt(None if s.fraction_of_ceiling is None else s.fraction_of_ceiling * 100, 0, "%"),
            fmt(s.ratio_to_nodered, 2, "x"),
        )
    return table


def _peer_cpu(s: PeerSummary) -> Spread:
    return s.peer_cpu_s_per_m, s.peer_cpu_s_per_m_min, s.peer_cpu_s_per_m_max


def _influxd_cpu(s: PeerSummary) -> Spread:
    return s.influxd_cpu_s_per_m, s.influxd_cpu_s_per_m_min, s.influxd_cpu_s_per_m_max


def _aggregates(s: PeerSummary) -> str:
    if s.aggregates_expected is None:
        return "-"
    text = f"{s.aggregates_written or 0:,} / {s.aggregates_expected:,}"
    missing = s.aggregates_missing or 0
    if missing > 0:
        text += f"  MISSING {missing:,}"
    elif missing < 0:
        text += f"  {-missing:,} MORE"
    return text


def _cpu_per_m(scale: float, peer: float | None, influxd: float | None) -> str:
    peer_m = None if peer is None else peer * scale
    influxd_m = None if influxd is None else influxd * scale
    return f"gateway {fmt(peer_m, 1)}, influxd {fmt(influxd_m, 1)} s/M"


def _span_lines(report: BenchReport) -> list[str]:
    """Per gateway round: the aggregates' wait and the CPU to each end of the span."""
    lines = []
    for r in report.results:
        if r.cpu_span != "readings+aggregates":
            continue
        first = r.extras.get("to_last_reading") or {}
        cpu = partial(_cpu_per_m, 1e6 / r.expected)
        line = (
            f"{r.peer} round {r.round}: aggregates {r.aggregates_written or 0:,}"
            f"/{r.aggregates_expected or 0:,} ({r.aggregates_outcome},"
            f" {fmt(r.extras.get('after_last_reading_s'), 1, ' s')} after the last reading);"
            f" CPU to the last reading ({fmt(first.get('seconds'), 1, ' s')}):"
            f" {cpu(first.get('peer_cpu_s'), first.get('influxd_cpu_s'))};"
            f" to the last aggregate ({fmt(r.cpu_seconds, 1, ' s')}):"
            f" {cpu(r.peer_cpu_s, r.influxd_cpu_s)}"
        )
        idle = r.extras.get("idle_while_waiting")
        wait = r.extras.get("after_last_reading_s")
        if idle and wait:
            idle_cost = cpu(idle["peer_cpu_share"] * wait, idle["influxd_cpu_share"] * wait)
            line += (
                f"; idle in the wait, the gateway used {idle['peer_cpu_share']:.1%} of a core"
                f" and influxd {idle['influxd_cpu_share']:.1%} (over the {wait:.0f} s wait:"
                f" {idle_cost} of the figures above)"
            )
        if "mqtt_client_cpu_s" in r.extras:
            line += (
                f"; MQTT client {r.extras['mqtt_client_cpu_s']:.1f} s"
                f" ({r.extras['mqtt_client_cpu_share']:.0%} of the gateway's CPU)"
            )
        lines.append(line)
    return lines


def _percent(share: float | None) -> float | None:
    return None if share is None else share * 100


_FLEETS = {"burst": " (the burst's own devices)", "new": " (a new fleet of devices)"}


def _latency_lines(report: BenchReport) -> list[str]:
    lines = []
    for r in report.results:
        lat = r.extras.get("latency")
        if not lat:
            continue
        if "error" in lat:
            lines.append(f"{r.peer} round {r.round}: latency phase failed: {lat['error']}")
            continue
        lines.append(
            f"{r.peer} round {r.round}: at {lat['rate_readings_per_s']:,.0f} readings/s"
            f"{_FLEETS.get(lat.get('fleet'), '')},"
            f" arrival→stored p50 {fmt(lat.get('arrival_to_stored_p50_s'), 3, ' s')}"
            f" p99 {fmt(lat.get('arrival_to_stored_p99_s'), 3, ' s')};"
            f" event→stored p99 {fmt(lat.get('event_to_stored_p99_s'), 3, ' s')};"
            f" gateway CPU {fmt(lat.get('gateway_cpu_us_per_reading'), 1, ' µs')} per reading"
            f" ({fmt(_percent(lat.get('gateway_core_share')), 1, '%')} of a core)"
        )
    return lines


def problems(report: BenchReport) -> list[str]:
    """Return every failure and every loss, one line each (never hidden)."""
    out = []
    for r in report.results:
        if r.error:
            out.append(f"{r.peer} round {r.round}: {r.error}")
        elif r.lost:
            out.append(
                f"{r.peer} round {r.round}: stored {r.stored:,} of {r.expected:,} readings"
                f" (lost {r.lost:,}; influxd answered {r.influxd_server_errors or 0} writes"
                " with 5xx)"
            )
        if r.aggregates_missing:
            out.append(
                f"{r.peer} round {r.round}: wrote {r.aggregates_written or 0:,} of"
                f" {r.aggregates_expected:,} aggregates ({r.aggregates_outcome}); its CPU"
                " figures run to the end of the wait"
            )
    return out


def exit_code(report: BenchReport) -> int:
    """1 if a round failed or a SensorGate peer lost readings or aggregates; else 0.

    Another peer's losses are a finding about that peer, reported but not a failure.
    """
    for r in report.results:
        if r.error or (r.peer.startswith("sensorgate") and (r.lost or r.aggregates_missing)):
            return 1
    return 0


def print_report(report: BenchReport, console: Console) -> None:
    """Print the table and the lines that go with it."""
    console.print(build_table(report))
    for line in [*_span_lines(report), *_latency_lines(report)]:
        console.print(line)
    if report.idle_gateway:
        idle = report.idle_gateway
        if "error" in idle:
            console.print(f"idle gateway: failed: {idle['error']}")
        else:
            console.print(
                f"idle gateway (default rules, no traffic): {idle['cpu_share']:.1%} of one"
                f" core over {idle['seconds']:.0f} s, {idle['peak_rss_mb']} MB"
            )
    for line in problems(report):
        console.print(f"[bold red]{line}[/bold red]")


def report_json(report: BenchReport) -> str:
    """Return the report as JSON."""
    return json.dumps(report.as_dict(), indent=2)


def chart(report: BenchReport, path: Path) -> None:
    """Draw rate and CPU per million readings per peer (median, min-max whiskers) as a PNG."""
    rows = [s for s in report.summaries if s.rate_median is not None]
    fig, (ax_rate, ax_cpu) = subplots(12)
    whisker_bars(
        ax_rate,
        [s.peer for s in rows],
        [(s.rate_median, s.rate_min, s.rate_max) for s in rows],
        ["#a0aec0" if s.peer == "influxd" else "#2b6cb0" for s in rows],
        "end-to-end rate (median, min-max)",
        "readings/s, first publish to last stored",
    )
    _cpu_bars(ax_cpu, rows)
    for ax in (ax_rate, ax_cpu):
        ax.tick_params(axis="x", labelrotation=15)
    w = report.workload
    save_figure(
        fig,
        path,
        f"sensorgate bench {report.scenario}: {w['total']:,} readings, {w['devices']:,} devices,"
        f" {report.rounds} round(s) · {report.machine.get('cpus')} cores · {report.started_at}",
    )


def _cpu_bars(ax: Axes, rows: list[PeerSummary]) -> None:
    """Peer and influxd CPU per million readings, side by side per peer."""
    x = list(range(len(rows)))
    width = 0.4
    for offset, spreads, label, color in (
        (-width / 2, [_peer_cpu(s) for s in rows], "peer", "#2b6cb0"),
        (width / 2, [_influxd_cpu(s) for s in rows], "influxd", "#dd6b20"),
    ):
        mid, yerr = whiskers(spreads)
        ax.bar([i + offset for i in x], mid, width, yerr=yerr, capsize=3, label=label, color=color)
    # The sensorgate peers' CPU runs to their last aggregate: say so on the axis.
    ax.set_xticks(
        x,
        [
            s.peer + ("\n(+aggregates)" if "readings+aggregates" in s.cpu_spans else "")
            for s in rows
        ],
    )
    ax.set_ylabel("CPU seconds per 1 M readings")
    ax.set_title("CPU per million readings (median, min-max)")
    ax.legend()


run_and_report = render.Reporter(report_json, print_report, exit_code, chart).run_and_report
"""Run the benchmark, print progress and a table (or JSON), write the JSON and chart."""
