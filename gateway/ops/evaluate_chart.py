"""The evaluation chart: one file's signals, labelled anomalies and alarms (PNG).

Times go to matplotlib as date numbers (:func:`matplotlib.dates.date2num`) on a date
axis (``xaxis_date``): what plotting datetimes does, in the types its stubs declare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dataflows.eventclock import from_us

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from contract import TelemetryEvent
    from gateway.ops.detect import AlarmInterval, DetectionRun
    from gateway.ops.evaluate import KeptFile
    from gateway.ops.evaluate_nab import NabFile
    from simulators.labels import Label

__all__ = ["Chart", "device_chart", "skab_chart", "write_chart", "write_nab_chart"]


@dataclass(frozen=True, slots=True)
class Chart:
    """What the evaluation chart shows of one file or device."""

    title: str
    times: Sequence[datetime]
    series: dict[str, list[float | None]]
    """Metric -> its value at each of ``times`` (None: none then)."""
    label_spans: Sequence[tuple[datetime, datetime]]
    """Labelled anomalies, start to end."""
    alarms: Sequence[AlarmInterval]


def skab_chart(kept: KeptFile) -> Chart:
    """Return the chart of one scored SKAB file: its label runs as spans."""
    times = [r.time for r in kept.table.rows]
    series = {m: [r.values.get(m) for r in kept.table.rows] for m in kept.table.metrics}
    spans = []
    start = None
    for t, flag in zip(times, kept.labels, strict=True):
        if flag and start is None:
            start = t
        elif not flag and start is not None:
            spans.append((start, t))
            start = None
    if start is not None:
        spans.append((start, times[-1]))
    return Chart(f"SKAB {kept.name}", times, series, spans, kept.intervals)


def device_chart(
    telemetry: dict[tuple[str, str], list[TelemetryEvent]],
    labels: Sequence[Label],
    runs: dict[tuple[str, str], DetectionRun],
    which: str | None,
) -> Chart | None:
    """Return the chart of device ``which`` (default: the one with the most labels)."""
    if not telemetry:
        return None
    keys = sorted(telemetry)
    if which is not None:
        keys = [k for k in keys if k[1] == which] or keys
    else:  # the device with the most labels makes the most telling picture
        keys.sort(key=lambda k: -sum(1 for lb in labels if (lb.site, lb.device) == k))
    site, device = keys[0]
    events = sorted(telemetry[(site, device)], key=lambda e: e.time)
    times = [e.data.readings[0].time for e in events]
    metrics = sorted({r.metric for e in events for r in e.data.readings})
    series = {
        m: [next((r.value for r in e.data.readings if r.metric == m), None) for e in events]
        for m in metrics
    }
    spans = [(lb.start, lb.end) for lb in labels if (lb.site, lb.device) == (site, device)]
    return Chart(f"{site}/{device}", times, series, spans, runs[(site, device)].intervals())


def _num(when: datetime) -> float:
    from matplotlib.dates import date2num

    # matplotlib.dates has no stub (no dates.pyi) and date2num no annotations.
    return float(date2num(when))  # type: ignore[no-untyped-call]


def write_chart(path: Path, chart: Chart) -> None:
    """Plot each series (scaled to its own range) with labels shaded and alarms as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(
        2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [4, 1]}
    )
    ax.xaxis_date()
    for i, (name, values) in enumerate(sorted(chart.series.items())):
        pts = [(_num(t), v) for t, v in zip(chart.times, values, strict=True) if v is not None]
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
    for label in chart.label_spans:
        start, stop = _num(label[0]), _num(label[1])
        ax.axvspan(start, stop, color="red", alpha=0.12, linewidth=0)
        bx.axvspan(start, stop, ymin=0.55, ymax=0.95, color="red", alpha=0.5, linewidth=0)
    _alarm_bars(bx, chart.alarms, end=chart.times[-1] if chart.times else from_us(0))
    ax.set_yticks([])
    ax.legend(loc="upper left", fontsize=7, ncol=4)
    ax.set_title(
        f"{chart.title}: signals (each scaled to its range), labelled anomalies shaded red"
    )
    bx.set_yticks([0.25, 0.75], ["alarms", "labels"])
    rows = sorted({iv.series for iv in chart.alarms})
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
