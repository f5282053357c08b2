"""Counters and gauges of the InfluxDB writers, as snapshots for the metrics endpoint."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["PipelineStats", "WriterStats"]


@dataclass(frozen=True, slots=True)
class WriterStats:
    """A snapshot of a writer's counters (monotonic) and gauges, for metrics."""

    points_written: int
    """Lines InfluxDB accepted (live and drained)."""
    write_errors: int
    """Failed requests, each failed attempt counted."""
    retries: int
    """Attempts repeated after a failure (live retries and drain retries)."""
    rejected_points: int
    """Lines refused as bad data and handed to ``on_rejected``."""
    spilled_points: int
    """Lines ever appended to the spill."""
    drained_points: int
    """Lines sent from the spill to InfluxDB."""
    spill_bytes: int
    """Gauge: stored bytes in the spill now."""
    spill_batches: int
    """Gauge: batches in the spill now."""
    spill_points: int
    """Gauge: lines in the spill now."""
    spill_full: bool
    """Gauge: a write is blocked because the spill is at its budget."""
    spill_full_seconds: float
    """Time writes have spent blocked on a full spill."""

    @classmethod
    def total(cls, many: Iterable[WriterStats]) -> WriterStats:
        """Add up the stats of several writers (one per worker and sink) for a process."""
        items = list(many)
        return cls(
            points_written=sum(s.points_written for s in items),
            write_errors=sum(s.write_errors for s in items),
            retries=sum(s.retries for s in items),
            rejected_points=sum(s.rejected_points for s in items),
            spilled_points=sum(s.spilled_points for s in items),
            drained_points=sum(s.drained_points for s in items),
            spill_bytes=sum(s.spill_bytes for s in items),
            spill_batches=sum(s.spill_batches for s in items),
            spill_points=sum(s.spill_points for s in items),
            spill_full=any(s.spill_full for s in items),
            spill_full_seconds=sum(s.spill_full_seconds for s in items),
        )


@dataclass(frozen=True, slots=True)
class PipelineStats(WriterStats):
    """:class:`WriterStats` plus the pipelined writer's own gauges.

    :meth:`WriterStats.total` accepts these too (and sums the common part).
    """

    in_flight: int
    """Gauge: write requests being sent now (retries included)."""
    submitted_through: int
    """The sequence number of the last body submitted."""
    durable_through: int
    """Every body up to this sequence number is durable (stored, spilled or refused)."""
    queued_lines: int
    """Gauge: lines submitted and not yet taken by a sender."""
    submit_blocked: bool
    """Gauge: a ``submit`` waits because the queue is at ``max_pending_lines``."""
    submit_blocked_seconds: float
    """Time ``submit`` calls have spent waiting for room in the queue."""
