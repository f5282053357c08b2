"""Recorded readings gathered, one at a time, into the engine's offline columns.

:func:`~gateway.ops.detect.run_detection` (telemetry events) and
:mod:`~gateway.ops.replay` (stored rows) both feed the shard engine
:class:`~dataflows.offline.OfflineEvents`; this is the one place that builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dataflows.offline import OfflineEvents

__all__ = ["EventColumns"]


@dataclass
class EventColumns:
    """Columns of one device's events, in time order: :meth:`event`, then its readings."""

    ids: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    sensors: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    faults: dict[int, str] = field(default_factory=dict)

    def event(self, event_id: str) -> None:
        """Start an event: the readings added next belong to it."""
        self.ids.append(event_id)
        self.counts.append(0)

    def reading(
        self, sensor: str, metric: str, t_us: int, value: float | None, fault: str = ""
    ) -> None:
        """Add a reading to the current event (``value`` None: a fault, NaN in the column)."""
        if value is None:
            self.faults[len(self.values)] = fault
        self.counts[-1] += 1
        self.sensors.append(sensor)
        self.metrics.append(metric)
        self.times.append(t_us)
        self.values.append(float("nan") if value is None else float(value))

    def build(self) -> OfflineEvents:
        """Return the columns as the engine takes them."""
        return OfflineEvents(
            event_ids=self.ids,
            counts=np.asarray(self.counts, np.int64),
            sensors=self.sensors,
            metrics=self.metrics,
            t_us=np.asarray(self.times, np.int64),
            values=np.asarray(self.values, np.float64),
            faults=self.faults,
        )
