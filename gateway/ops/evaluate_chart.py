"""The evaluation chart: one file's signals, labelled anomalies and alarms (PNG).

Times go to matplotlib as date numbers (:func:`matplotlib.dates.date2num`) on a date
axis (``xaxis_date``): what plotting datetimes does, in the types its stubs declare.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataflows.eventclock import from_us

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from gateway.ops.detect import AlarmInterval
    from gateway.ops.evaluate_nab import NabFile

__all__ = ["write_chart", "write_nab_chart"]


def _num(when: datetime) -> float:
    from matplotlib.dates import date2num

    # matplotlib ships date2num without annotations (matplotlib/dates.pyi has none).
    return float(date2num(when))  # type: ignore[no-untyped-call]


def write_chart(
    path: Path,
    *,
    title: str,
    times: Sequence[datetime],
    series: dict[str, list[float | None]],
    label_spans: Sequence[tuple[Any, ...]],
    alarms: Sequence[AlarmInterval],
) -> None:
    """Plot each series (scaled to its own range) with labels shaded and alarms as bars.

    ``label_spans`` are ``(start, end)`` or ``(start, end, kind)`` with datetimes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(
        2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [4, 1]}
    )
    ax.xaxis_date()
    for i, (name, values) in enumerate(sorted(series.items())):
        pts = [(_num(t), v) for t, v in zip(times, values, strict=True) if v is not None]
        if not pts:
            continue
        lo = min(v for _, v in pts)
        hi = max(v for _, v in pts)
        scale = (hi - lo) or 1.0
        ax.plot(
            [t for t, _ in pts],
            [i + 0.8 * (v - lo) / scale for _, v in pts],
            linewidth=0.7,
            label=name,
        )
    for label in label_spans:
        start, stop = _num(label[0]), _num(label[1])
        ax.axvspan(start, stop, color="red", alpha=0.12, linewidth=0)
        bx.axvspan(start, stop, ymin=0.55, ymax=0.95, color="red", alpha=0.5, linewidth=0)
    _alarm_bars(bx, alarms, end=times[-1] if times else from_us(0))
    ax.set_yticks([])
    ax.legend(loc="upper left", fontsize=7, ncol=4)
    ax.set_title(f"{title}: signals (each scaled to its range), labelled anomalies shaded red")
    bx.set_yticks([0.25, 0.75], ["alarms", "labels"])
    rows = sorted({iv.series for iv in alarms})
    bx.set_xlabel(f"event time (UTC); alarm series: {', '.join(rows)[:120]}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _alarm_bars(bx: Axes, alarms: Sequence[AlarmInterval], *, end: datetime) -> None:
    """Draw each alarm's active interval as a bar (one still active runs to ``end``)."""
    for iv in alarms:
        stop = end if iv.end_us is None else from_us(iv.end_us)
        start = _num(from_us(iv.start_us))
        bx.axvspan(
            start, _num(stop), ymin=0.05, ymax=0.45, color="tab:blue", alpha=0.5, linewidth=0
        )


def write_nab_chart(path: Path, data: NabFile, detections_us: Sequence[int]) -> None:
    """Plot one NAB file: the series, its label windows, the probation and the detections."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def when(t_us: int) -> float:
        return _num(from_us(int(t_us)))

    times = [when(t) for t in data.t_us.tolist()]
    fig, ax = plt.subplots(figsize=(14, 4))
    ax.xaxis_date()
    ax.plot(times, data.values, linewidth=0.6, color="tab:blue")
    for start, end in data.windows:
        ax.axvspan(when(start), when(end), color="red", alpha=0.15, linewidth=0)
    probation = min(int(0.15 * len(times)), 750)
    if times:
        ax.axvspan(times[0], times[probation], color="grey", alpha=0.12, linewidth=0)
    for t in detections_us:
        ax.axvline(when(t), color="black", linewidth=0.8)
    ax.set_title(
        f"{data.name}: label windows red, probation grey, {len(detections_us)} detections (lines)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
