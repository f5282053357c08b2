"""The synchronous writer that survives InfluxDB outages: retry briefly, spill, drain in order.

:class:`ResilientWriter` is a :class:`~gateway.influx.pipeline.PipelinedWriter` used
synchronously, for the sinks that write a few lines at a time and must know they are
stored before they return (alarms, dead letters, rejected points): when
:meth:`~gateway.influx.pipeline.PipelinedWriter.write` returns, every line is stored in
InfluxDB, durably in the spill buffer (:mod:`gateway.influx.spill`), or reported as
rejected bad data through ``on_rejected``. Lines are in nanoseconds.

It keeps the pipelined writer's guarantees (see :mod:`gateway.influx.pipeline`: retries
for ``spill_after_s``, then the spill, drained in order at most ``drain_rate`` points/s;
a full spill blocks ``write``; refused lines bisected and reported once) with one
request in flight at a time, so that it also keeps the order of the writes: a write
that finds the spill non-empty goes behind it, and the spill becomes empty only by the
drainer's own removal.
"""

from __future__ import annotations

from gateway.influx.pipeline import PipelinedWriter, RejectHandler
from gateway.influx.spill import SpillBuffer
from gateway.influx.spillway import claim_spill, spill_key
from gateway.influx.stats import WriterStats
from gateway.influx.writer import BatchWriter, make_writer
from gateway.settings import InfluxSettings

__all__ = ["RejectHandler", "ResilientWriter", "WriterStats", "make_resilient_writer", "spill_key"]


class ResilientWriter(PipelinedWriter):
    """A :class:`~gateway.influx.writer.PointWriter` that spills during outages.

    ``spill=None`` keeps the retries and the bad-point isolation but no spill: a write
    that fails for ``retry_max_s`` raises :class:`~contract.errors.StorageError`, as the
    plain writers do.
    """

    def __init__(
        self,
        inner: BatchWriter,
        spill: SpillBuffer | None,
        *,
        settings: InfluxSettings,
        on_rejected: RejectHandler | None = None,
    ) -> None:
        super().__init__(
            inner,
            spill,
            settings=settings,
            on_rejected=on_rejected,
            precision="ns",
            max_in_flight=1,
        )


def make_resilient_writer(
    settings: InfluxSettings,
    *,
    on_rejected: RejectHandler | None = None,
    policy: str | None = None,
) -> ResilientWriter:
    """Return the configured writer to ``policy`` with retries, spill and bad-point isolation.

    ``policy`` is the retention policy written to (None: the database's default).
    """
    return ResilientWriter(
        make_writer(settings, policy=policy),
        claim_spill(settings, policy),
        settings=settings,
        on_rejected=on_rejected,
    )
