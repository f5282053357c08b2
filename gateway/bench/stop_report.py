"""Print and save the results of ``sensorgate bench-stop``: a table and a JSON report."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from gateway.bench.render import Reporter, spread_text
from gateway.bench.stop_results import GRACEFUL_EXIT_TARGET_S, StopReport

__all__ = ["build_stop_table", "run_and_report_stop", "stop_exit_code"]


def build_stop_table(report: StopReport) -> Table:
    """Return one row per stop mode: median (min-max) over the rounds."""
    w = report.workload
    table = Table(
        title=f"sensorgate bench-stop: {w['total']:,} readings in {w['messages']:,} messages,"
        f" stopped once {report.stop_at:.0%} are stored · {report.rounds} round(s)",
        caption=f"exit: signal to process exit (target {GRACEFUL_EXIT_TARGET_S:g} s for"
        " SIGTERM/SIGINT). redelivered: messages the broker sent the second gateway again"
        " (dup). second took: valid messages it took in, duplicates not counted."
        " duplicates: readings its dedupe dropped (recovery shared). re-stored: readings it"
        " stored that the first had stored already. bound: messages the first could hold"
        " unacknowledged (inbox + one epoch + read buffer; in brackets, + socket buffers),"
        " median.",
    )
    table.add_column("stop", justify="left")
    for name in (
        "exit s\nmedian (min-max)",
        "exit\ncodes",
        "redelivered\nmessages",
        "second took\nmessages",
        "duplicates\ndropped",
        "re-stored\nreadings",
        "in-flight bound\n(with sockets)",
        "stored\n(rounds complete)",
        "second gateway\ndrain s",
    ):
        table.add_column(name, justify="right")
    for s in report.summaries:
        # Medians only (the rounds' bounds differ by the measured rate; the JSON has all).
        bound = "-" if s.bound[0] is None else f"{s.bound[0]:,.0f}"
        if s.bound_with_sockets[0] is not None:
            bound += f" ({s.bound_with_sockets[0]:,.0f})"
        lost = f", LOST {s.lost:,}" if s.lost else ""
        table.add_row(
            f"{s.mode}\n[dim]{s.description}[/dim]",
            spread_text(s.exit_s, 2),
            ", ".join("-" if c is None else str(c) for c in s.exit_codes),
            spread_text(s.redelivered),
            spread_text(s.second_messages),
            spread_text(s.duplicates),
            spread_text(s.rewritten),
            bound,
            f"{s.complete_rounds}/{s.rounds}{lost}",
            spread_text(s.drain_s, 1),
        )
    return table


def stop_exit_code(report: StopReport) -> int:
    """1 if a trial failed or missed a target (see ``problems``); else 0."""
    return 1 if report.problems else 0


def _notes(report: StopReport) -> list[str]:
    lines = []
    kills = [t for t in report.trials if not t.graceful and t.bound and t.redelivered is not None]
    rpm = int(report.workload.get("readings_per_message") or 1)
    for t in kills:
        assert t.bound is not None
        b = t.bound
        twice = t.processed_twice(rpm)
        lines.append(
            f"{t.mode} round {t.round}: {t.redelivered:,} sent again of the"
            f" {t.second_messages or 0:,} the second took; processed by both:"
            f" {'-' if twice is None else f'{twice:,}'} messages; bound {b.bound:,} ="
            f" inbox {b.inbox_messages:,}"
            f" ({b.inputs.get('inbox_max_bytes', 0) / 2**20:g} MiB / {b.message_bytes:,.0f} B)"
            f" + epoch {b.epoch_messages:,}"
            f" ({b.inputs.get('messages_per_s', 0):,.0f} msg/s x"
            f" {b.inputs.get('epoch_interval_s')} s + a batch of"
            f" {b.inputs.get('batch_max_messages', 0):,.0f})"
            f" + read buffer {b.read_buffer_messages:,}; socket buffers up to"
            f" {b.socket_messages:,} more; Receive Maximum {b.receive_maximum:,}"
        )
    exits = [t.second_exit_s for t in report.trials if t.second_exit_s is not None]
    if exits:
        lines.append(f"second gateway, idle, SIGTERM to exit: {min(exits):.2f}-{max(exits):.2f} s")
    return lines


def _show(report: StopReport, console: Console) -> None:
    console.print(build_stop_table(report))
    for line in _notes(report):
        console.print(line, highlight=False)
    for line in report.problems:
        console.print(f"[bold red]{line}[/bold red]", highlight=False)


def _json(report: StopReport) -> str:
    return json.dumps(report.as_dict(), indent=2, default=str)


run_and_report_stop = Reporter(_json, _show, stop_exit_code).run_and_report
"""Run, print progress and the table (or JSON on stdout), write the JSON report."""
