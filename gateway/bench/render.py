"""What every benchmark report shows the same way.

A figure and a spread as text (``median (min-max)``), bars at the median with whiskers
from the lowest to the highest round, saving a chart, and the sequence each ``bench*``
command ends with (:class:`Reporter`): run with progress on the console, write the JSON
report (and the chart), print the table or the JSON, return the exit code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from rich.console import Console

from gateway.bench.results import Spread

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "Reporter",
    "fmt",
    "save_figure",
    "spread_text",
    "stored_text",
    "subplots",
    "whisker_bars",
    "write_report",
]

R = TypeVar("R")


def fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    """Return ``value`` with thousands separators and ``digits`` decimals, or ``-``."""
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def stored_text(stored: int | None, expected: int, *, share: bool = False) -> str:
    """Return ``stored / expected``, with ``LOST n`` (and its share) when some are missing."""
    if stored is None:
        return f"? / {expected:,}"
    text = f"{stored:,} / {expected:,}"
    lost = expected - stored
    if lost:
        text += f"  LOST {lost:,}" + (f" ({lost / expected:.2%})" if share else "")
    return text


def spread_text(value: Spread, digits: int = 0, unit: str = "") -> str:
    """Return ``median (min-max)``, or the median alone when the rounds agree, or ``-``."""
    mid, low, high = value
    if mid is None:
        return "-"
    text = fmt(mid, digits, unit)
    if low is not None and high is not None and low != high:
        text += f" ({fmt(low, digits)}-{fmt(high, digits)})"
    return text


def whiskers(spreads: Sequence[Spread]) -> tuple[list[float], list[list[float]]]:
    """Return the medians (0 for none) and the ``yerr`` whiskers down to min, up to max."""
    mid = [sp[0] or 0.0 for sp in spreads]
    low = [m - (sp[1] if sp[1] is not None else m) for m, sp in zip(mid, spreads, strict=True)]
    high = [(sp[2] if sp[2] is not None else m) - m for m, sp in zip(mid, spreads, strict=True)]
    return mid, [low, high]


def whisker_bars(
    ax: Axes,
    names: list[str],
    spreads: Sequence[Spread],
    colors: list[str],
    title: str,
    ylabel: str,
) -> None:
    """Draw one labelled bar per name at the median, whiskers from min to max."""
    mid, yerr = whiskers(spreads)
    drawn = ax.bar(names, mid, yerr=yerr, capsize=4, color=colors)
    ax.bar_label(drawn, labels=[f"{v:,.0f}" for v in mid], padding=3)
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:,.0f}")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.margins(y=0.15)


def subplots(width: float) -> tuple[Figure, tuple[Axes, Axes]]:
    """Return a figure of two charts side by side (Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(width, 4.8), dpi=100)
    return fig, (left, right)


def save_figure(fig: Figure, path: Path, title: str) -> None:
    """Title, lay out and write ``fig`` as a PNG at ``path``, then free it."""
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def write_report(path: Path | str, text: str) -> None:
    """Write a report's text (and a final newline) to ``path``, making its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Reporter(Generic[R]):
    """How one benchmark's report is written, shown and turned into an exit code."""

    to_json: Callable[[R], str]
    show: Callable[[R, Console], None]
    """Print the table and the lines that go with it."""
    exit_code: Callable[[R], int]
    chart: Callable[[R, Path], None] | None = None

    def run_and_report(
        self,
        run: Callable[[Callable[[str], None]], R],
        *,
        out: str,
        as_json: bool,
        chart_path: str | None = None,
    ) -> int:
        """Run a benchmark, print progress and a table (or JSON), write the JSON and chart.

        Progress and the table go to stdout, or to stderr with ``as_json`` so that stdout
        holds the JSON alone.
        """
        console = Console(stderr=as_json)
        if not console.is_terminal:
            console.width = 170  # a log file or a pipe: do not squeeze the table
        report = run(lambda m: console.print(f"[dim]… {m}[/dim]", highlight=False))
        text = self.to_json(report)
        write_report(out, text)
        if self.chart is not None and chart_path:
            self.chart(report, Path(chart_path))
        if as_json:
            sys.stdout.write(text + "\n")
        self.show(report, console)
        console.print(f"report: {out}" + (f", chart: {chart_path}" if chart_path else ""))
        return self.exit_code(report)
