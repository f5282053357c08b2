"""A batch's fresh telemetry: accepted, deduplicated, as columns with its messages.

What the shard step hands its rules after dedupe: message arrays (one entry per
telemetry event) and reading arrays (one entry per reading; an event's readings are
contiguous, ``counts[k]`` of them). Plain data, shared by the series rules, the device
rules and the site step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from dataflows.alarms import Cause
from dataflows.registry import Registry

__all__ = ["Fresh"]


@dataclass(frozen=True)
class Fresh:
    """Fresh telemetry of one batch segment (see the module docstring)."""

    devices: list[int]
    seqs: list[int]
    event_ids: list[str]
    traceparents: list[str | None]
    received_us: list[int]
    """Arrival time of each event: the clock deadman silence is counted on."""
    counts: npt.NDArray[np.int64]
    series: npt.NDArray[np.int32]
    t_us: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    """NaN for a fault reading (its text in ``faults``)."""
    faults: dict[int, str]

    @cached_property
    def msg_of_row(self) -> npt.NDArray[np.int64]:
        """The event index of every reading."""
        return np.repeat(np.arange(len(self.devices), dtype=np.int64), self.counts)

    @cached_property
    def starts(self) -> npt.NDArray[np.int64]:
        """The first reading row of every event."""
        return np.concatenate(([0], np.cumsum(self.counts)[:-1])).astype(np.int64)

    def cause(self, row: int, registry: Registry) -> Cause:
        """Return the cause of an alarm transition at reading ``row``: event and series."""
        m = int(self.msg_of_row[row])
        s = int(self.series[row])
        names = registry.names
        return Cause(
            self.event_ids[m], f"{names.sensor[s]}/{names.metric[s]}", self.traceparents[m]
        )
