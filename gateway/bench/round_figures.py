"""Turn what one burst measured into the figures of its :class:`~gateway.bench.results.RoundResult`.

Pure arithmetic on the snapshots (:mod:`gateway.bench.measure`), the publisher's report
and the aggregates' wait (:mod:`gateway.bench.aggregates`); no I/O.
"""

from __future__ import annotations

import itertools
from typing import Any

from gateway.bench.aggregates import AggregatesDone
from gateway.bench.measure import Completion, Snapshot
from gateway.bench.results import RoundResult

__all__ = ["fill_aggregate_figures", "fill_burst_figures"]


def fill_aggregate_figures(
    result: RoundResult, completion: Completion, done: AggregatesDone
) -> None:
    """Extend the CPU figures of ``result`` to the last aggregate stored.

    The end-to-end rate stays the readings' (first publish to last reading stored); the
    CPU figures and the peak RSS then cover the burst's start to the end of ``done``.
    The readings-only CPU figures are kept in ``extras["to_last_reading"]``.
    """
    start, end = completion.start, done.end
    result.extras["to_last_reading"] = {
        "seconds": result.cpu_seconds,
        "peer_cpu_s": result.peer_cpu_s,
        "influxd_cpu_s": result.influxd_cpu_s,
    }
    result.aggregates_expected = done.expected
    result.aggregates_written = None if done.written is None else int(done.written)
    result.aggregates_outcome = done.outcome
    result.cpu_span = "readings+aggregates"
    result.cpu_seconds = round(end.t - start.t, 3)
    if end.peer_cpu_s is not None and start.peer_cpu_s is not None:
        result.peer_cpu_s = round(end.peer_cpu_s - start.peer_cpu_s, 3)
    result.influxd_cpu_s = round(end.influxd_cpu_s - start.influxd_cpu_s, 3)
    result.extras["after_last_reading_s"] = round(end.t - completion.end.t, 3)
    result.extras["points_written_to_last_aggregate"] = end.point_req - start.point_req
    # Every few seconds of the wait: what influxd took and what it cost (for the JSON).
    t0, step, next_t = completion.end.t, 2.0, completion.end.t
    timeline = []
    for snap in done.samples:
        if snap.t >= next_t or snap is done.samples[-1]:
            next_t = snap.t + step
            timeline.append(
                {
                    "t_s": round(snap.t - t0, 2),
                    "points": snap.point_req - start.point_req,
                    "aggregates": snap.claimed if snap is not done.samples[0] else None,
                    "influxd_cpu_s": round(snap.influxd_cpu_s - start.influxd_cpu_s, 2),
                    "peer_cpu_s": None
                    if snap.peer_cpu_s is None or start.peer_cpu_s is None
                    else round(snap.peer_cpu_s - start.peer_cpu_s, 2),
                }
            )
    result.extras["after_last_reading"] = timeline
    idle = _idle_shares(done.samples[1:])
    if idle is not None:
        result.extras["idle_while_waiting"] = idle
    if done.peak_rss is not None:
        result.peak_rss_mb = max(result.peak_rss_mb or 0.0, round(done.peak_rss / 1e6, 1))


def _idle_shares(samples: list[Snapshot], settle_s: float = 5.0) -> dict[str, float] | None:
    """CPU shares of one core while idle: neither count moved for ``settle_s`` before.

    influxd goes on absorbing a write for a few seconds after its point count moved (the
    count rises on receipt), so only the stretches that start ``settle_s`` after the
    last change count as idle.
    """
    span = peer = influxd = 0.0
    changed = samples[0].t if samples else 0.0
    for a, b in itertools.pairwise(samples):
        if a.point_req != b.point_req or a.claimed != b.claimed:
            changed = b.t
            continue
        if a.t - changed < settle_s:
            continue
        span += b.t - a.t
        influxd += b.influxd_cpu_s - a.influxd_cpu_s
        if a.peer_cpu_s is not None and b.peer_cpu_s is not None:
            peer += b.peer_cpu_s - a.peer_cpu_s
    if span <= 0:
        return None
    return {
        "seconds": round(span, 1),
        "peer_cpu_share": round(peer / span, 4),
        "influxd_cpu_share": round(influxd / span, 4),
    }


def fill_burst_figures(
    result: RoundResult, completion: Completion, published: dict[str, Any], stored: int
) -> None:
    """Fill ``result`` from the completion, the publisher's report and the stored count."""
    start, end = completion.start, completion.end
    result.outcome = completion.outcome
    result.stored = stored
    result.publish_s = float(published["acknowledged_s"])
    result.points_written = completion.points
    result.write_requests = completion.last.write_req - start.write_req
    result.influxd_server_errors = completion.last.server_errors - start.server_errors
    if end is not start:
        result.seconds = round(end.t - float(published["first_publish"]), 3)
        if result.seconds > 0:
            result.readings_per_s = round(min(stored, result.expected) / result.seconds, 1)
        if end.peer_cpu_s is not None and start.peer_cpu_s is not None:
            result.peer_cpu_s = round(end.peer_cpu_s - start.peer_cpu_s, 3)
        result.influxd_cpu_s = round(end.influxd_cpu_s - start.influxd_cpu_s, 3)
        result.cpu_seconds = round(end.t - start.t, 3)
    if completion.peak_rss is not None:
        result.peak_rss_mb = round(completion.peak_rss / 1e6, 1)
    if not published.get("all_acknowledged", False):
        result.error = "the broker did not acknowledge every message of the burst"
    if completion.outcome != "settled":
        result.error = f"the burst did not settle: {completion.outcome}"
