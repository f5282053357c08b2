"""What a chaos run watches while it runs: RSS, the gateway's spill, a dead gateway.

A thread samples every two seconds; after the run, the samples become the peaks, the
spill drains per influxd outage, the spans the gateway was dead outside a fault, and a
PNG of RSS over time with the faults shaded.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from gateway.chaos.roles import Roles, members
from gateway.chaos.schedule import Action

__all__ = [
    "Samples",
    "dead_spans",
    "log_errors",
    "peaks",
    "plot",
    "sample",
    "spill_drains",
    "status",
    "wait_until_s",
]

EVERY_S = 2.0


@dataclass
class Samples:
    """Everything sampled during a run, in seconds since its start."""

    rss: list[tuple[float, str, float]] = field(default_factory=list)
    """(seconds, process role, RSS in MiB)."""
    marks: list[tuple[float, float, str]] = field(default_factory=list)
    """(from, to, action) of each fault."""
    spill: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since start, points in the gateway's spill) every two seconds."""
    gateway_dead: list[float] = field(default_factory=list)
    """Samples (seconds since start) at which the gateway process had exited outside a fault."""


def sample(roles: Roles, samples: Samples, t0: float, stop: threading.Event) -> None:
    """Sample every ``EVERY_S`` until ``stop`` is set (the body of a daemon thread)."""
    while not stop.wait(EVERY_S):
        t = time.monotonic() - t0
        for name, pid in members(roles).items():
            try:
                samples.rss.append((t, name, psutil.Process(pid).memory_info().rss / 2**20))
            except psutil.Error:
                continue
        gw = roles.gateway
        if gw is not None and not roles.faulting and not gw.proc.alive():
            samples.gateway_dead.append(t)
        spill = _gateway_figures(roles, ("sensorgate_spill_points",))
        if spill is not None and "sensorgate_spill_points" in spill:
            samples.spill.append((t, spill["sensorgate_spill_points"]))


def _gateway_figures(roles: Roles, names: tuple[str, ...]) -> dict[str, float] | None:
    """Return the named figures of the gateway's /metrics (None: down or not answering)."""
    gw = roles.gateway
    if gw is None or not gw.proc.alive():
        return None
    try:
        text = httpx.get(f"http://127.0.0.1:{gw.metrics_port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    figures = {}
    for line in text.splitlines():
        for name in names:
            if line.startswith(name + " "):
                figures[name] = float(line.split()[1])
    return figures


def status(roles: Roles) -> str:
    """Return a line on the gateway: readings in and spill, or why it cannot say."""
    gw = roles.gateway
    if gw is None or not gw.proc.alive():
        return "gateway down"
    figures = _gateway_figures(roles, ("sensorgate_readings_in_total", "sensorgate_spill_points"))
    if figures is None:
        return "gateway not answering"
    return (
        f"gateway readings in {figures.get('sensorgate_readings_in_total', 0):,.0f} (since its"
        f" start), spill {figures.get('sensorgate_spill_points', 0):,.0f} points"
    )


def wait_until_s(t_load: float, at_s: float, roles: Roles, progress: Callable[[str], None]) -> None:
    """Sleep until ``at_s`` seconds after ``t_load``, printing the status every 30 s."""
    next_print = 0.0
    while (left := at_s - (time.monotonic() - t_load)) > 0:
        now = time.monotonic()
        if now >= next_print:
            next_print = now + 30
            progress(f"t={now - t_load:6.0f} s  {status(roles)}")
        time.sleep(min(left, 1.0))


def dead_spans(times: list[float], *, every_s: float) -> list[tuple[float, float]]:
    """Group sample times into spans; a gap of over two sampling periods starts a new one."""
    spans: list[tuple[float, float]] = []
    for t in sorted(times):
        if spans and t - spans[-1][1] <= 2 * every_s:
            spans[-1] = (spans[-1][0], t)
        else:
            spans.append((t, t))
    return [(round(a, 1), round(b, 1)) for a, b in spans]


def spill_drains(
    samples: list[tuple[float, float]], faults: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Return, for each influxd outage, the peak of the gateway's spill and its drain.

    The drain is how long after influxd was back the spill was empty again (None: never
    within the samples).
    """
    out = []
    for fault in faults:
        if fault["action"] != Action.STOP_INFLUXD.value:
            continue
        after = [(t, n) for t, n in samples if t >= fault["from_s"]]
        peak = max((n for _t, n in after), default=0.0)
        empty = next((t for t, n in after if t >= fault["to_s"] and n == 0), None)
        out.append(
            {
                "influxd_down_s": [fault["from_s"], fault["to_s"]],
                "spill_peak_points": int(peak),
                "spill_empty_after_s": None if empty is None else round(empty - fault["to_s"], 1),
            }
        )
    return out


def log_errors(path: Path) -> list[str]:
    """Return the distinct exception lines of a log (``SomeError: ...`` starting a line)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    found = re.findall(r"^[\w.]+(?:Error|Exception): .*$", text, flags=re.MULTILINE)
    return list(dict.fromkeys(found))[:10]


def peaks(samples: Samples) -> dict[str, float]:
    """Return each role's peak RSS in MiB."""
    out: dict[str, float] = {}
    for _t, name, mb in samples.rss:
        out[name] = round(max(out.get(name, 0.0), mb), 1)
    return out


def plot(samples: Samples, path: Path, report: dict[str, Any]) -> Path:
    """Draw RSS over time per role, the faults shaded, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(13, 5.5))
    for name in sorted({n for _t, n, _m in samples.rss}):
        points = [(t, mb) for t, n, mb in samples.rss if n == name]
        ax.plot([p[0] for p in points], [p[1] for p in points], ".", ms=2.5, label=name)
    for start, end, label in samples.marks:
        ax.axvspan(start, max(end, start + 2), color="0.85", zorder=0)
        ax.text(
            start,
            ax.get_ylim()[1] * 0.97,
            label.replace("_", " "),
            rotation=90,
            va="top",
            ha="right",
            fontsize=8,
        )
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title(
        f"sensorgate chaos: {report['minutes']:g} min at {report['rate']:,.0f} readings/s,"
        " RSS of every process (grey: faults)"
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, markerscale=4)
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
