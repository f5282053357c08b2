"""Sampling while a burst is absorbed: CPU and RSS of process trees, influxd's write count.

:func:`watch_until_stored` polls influxd's ``/debug/vars`` write statistics every
``interval_s`` (cheap for influxd, unlike a ``count()`` query) together with the CPU and
RSS of the peer's whole process tree and of influxd, and stops once the number of points
written has not moved for ``settle_s`` seconds. The snapshot at which the count last
moved marks the moment the last point was stored, and the CPU figures are taken there:
from the start of the burst to its completion, not including the settling wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from gateway.bench.influxd import Influxd

__all__ = ["Completion", "ProcessTree", "Snapshot", "idle_cpu_share", "watch_until_stored"]


class ProcessTree:
    """A process and all its descendants, measured together."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)

    def _members(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return [self.root]

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the tree (children that ended and were reaped too)."""
        total = 0.0
        for proc in self._members():
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total

    def rss_bytes(self) -> int:
        """Resident memory of the tree right now."""
        total = 0
        for proc in self._members():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def alive(self) -> bool:
        """Whether the root process still runs."""
        try:
            return bool(self.root.is_running() and self.root.status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One sample: monotonic time, influxd's counters, CPU and RSS."""

    t: float
    point_req: int
    write_req: int
    server_errors: int
    influxd_cpu_s: float
    peer_cpu_s: float | None
    peer_rss: int | None
    claimed: float | None = None
    """The peer's own count of stored readings, where it exposes one."""


def take_snapshot(
    influxd: Influxd,
    influxd_tree: ProcessTree,
    peer: ProcessTree | None,
    claimed: Callable[[], float | None] | None = None,
) -> Snapshot:
    """Sample everything once."""
    stats = influxd.write_stats()
    return Snapshot(
        t=time.monotonic(),
        point_req=stats.point_req,
        write_req=stats.write_req,
        server_errors=stats.server_errors,
        influxd_cpu_s=influxd_tree.cpu_seconds(),
        peer_cpu_s=peer.cpu_seconds() if peer else None,
        peer_rss=peer.rss_bytes() if peer else None,
        claimed=claimed() if claimed else None,
    )


@dataclass
class Completion:
    """How a burst ended."""

    start: Snapshot
    end: Snapshot
    """The first snapshot that saw the final point count: the last point stored."""
    last: Snapshot
    peak_rss: int | None
    samples: list[Snapshot] = field(default_factory=list)
    outcome: str = "settled"
    """``settled``, ``timeout``, ``nothing stored`` or ``peer exited``."""

    @property
    def points(self) -> int:
        """Points written to influxd during the burst."""
        return self.end.point_req - self.start.point_req


def watch_until_stored(
    influxd: Influxd,
    influxd_tree: ProcessTree,
    peer: ProcessTree | None,
    *,
    start: Snapshot,
    expected: int | None = None,
    settle_s: float = 3.0,
    short_settle_x: float = 5.0,
    first_point_timeout_s: float = 60.0,
    timeout_s: float = 600.0,
    interval_s: float = 0.25,
    claimed: Callable[[], float | None] | None = None,
    progress: Callable[[Snapshot], None] | None = None,
    progress_every_s: float = 5.0,
) -> Completion:
    """Sample until influxd's point count has been still for ``settle_s`` seconds.

    While fewer than ``expected`` readings are stored (by the peer's own count where it
    has one, else by influxd's point count) the wait is ``short_settle_x`` times longer:
    a peer that is retrying or backing off is not taken for one that has finished. The
    end of the burst is the last change either way; only the waiting grows.
    """
    samples = [start]
    end = start
    peak = start.peer_rss
    outcome = "settled"
    next_progress = start.t + progress_every_s
    while True:
        time.sleep(interval_s)
        snap = take_snapshot(influxd, influxd_tree, peer, claimed)
        samples.append(snap)
        if snap.peer_rss is not None:
            peak = max(peak or 0, snap.peer_rss)
        if snap.point_req != end.point_req:
            end = snap
        if progress is not None and snap.t >= next_progress:
            next_progress = snap.t + progress_every_s
            progress(snap)
        if end is not start and snap.t - end.t >= settle_s:
            stored = snap.claimed if snap.claimed is not None else snap.point_req - start.point_req
            short = expected is not None and stored < expected
            if not short or snap.t - end.t >= settle_s * short_settle_x:
                break
        if end is start and snap.t - start.t >= first_point_timeout_s:
            outcome = "nothing stored"
            break
        if snap.t - start.t >= timeout_s:
            outcome = "timeout"
            break
        if peer is not None and not peer.alive():
            outcome = "peer exited"
            break
    return Completion(
        start=start, end=end, last=samples[-1], peak_rss=peak, samples=samples, outcome=outcome
    )


def idle_cpu_share(tree: ProcessTree, seconds: float, interval_s: float = 1.0) -> dict[str, float]:
    """Return the tree's CPU share of one core over ``seconds`` of idleness, and its RSS."""
    cpu0, t0 = tree.cpu_seconds(), time.monotonic()
    peak = tree.rss_bytes()
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        time.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))
        peak = max(peak, tree.rss_bytes())
    span = time.monotonic() - t0
    return {
        "seconds": round(span, 2),
        "cpu_s": round(tree.cpu_seconds() - cpu0, 3),
        "cpu_share": round((tree.cpu_seconds() - cpu0) / span, 4) if span else 0.0,
        "peak_rss_mb": round(peak / 1e6, 1),
    }
