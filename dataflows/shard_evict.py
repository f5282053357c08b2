"""Forgetting a shard's idle devices: their series, windows, rules and alarms.

:class:`Evictor` runs at most every tenth of ``evict_idle_us`` (an hour at most) and
forgets the devices silent for ``evict_idle_us``, compacting every per-device and
per-series table of the shard.
"""

from __future__ import annotations

import logging

import numpy as np

from contract.alarms import AlarmEvent
from dataflows.config import StreamConfig
from dataflows.device_rules import DeviceRules
from dataflows.observer import Observer
from dataflows.registry import NONE, Registry
from dataflows.series_alarms import SeriesAlarms
from dataflows.windows import WindowStore

log = logging.getLogger(__name__)

__all__ = ["Evictor"]


class Evictor:
    """Forgets a shard's idle devices (see the module docstring)."""

    def __init__(
        self,
        config: StreamConfig,
        registry: Registry,
        windows: WindowStore,
        series_alarms: SeriesAlarms,
        device_rules: DeviceRules,
        observer: Observer,
    ) -> None:
        self.config = config
        self.registry = registry
        self.windows = windows
        self.series_alarms = series_alarms
        self.device_rules = device_rules
        self.observer = observer
        self._next_us: int | None = None

    def maybe(self, now: int) -> list[AlarmEvent]:
        """Evict if it is time to look again; return the alarms that clears."""
        idle = self.config.evict_idle_us
        if idle is None:
            return []
        every = min(idle // 10, 3_600_000_000)
        if self._next_us is None:
            self._next_us = now + every
        if now < self._next_us:
            return []
        self._next_us = now + every
        return self.evict_idle(now)

    def evict_idle(self, now: int) -> list[AlarmEvent]:
        """Forget devices silent for ``evict_idle_us``; return the alarms that clears.

        A forgotten device's alarms (its deadman, its last will, a series alarm that
        was up when it went silent) are cleared with that reason: nothing keeps them
        true any more. A device stays while one of its windows is open (it closes
        once the fleet's clock passes it). Evicting after the ingest's ``max_past``
        (the default) keeps dedupe exact: a redelivery of a forgotten device's old
        message is refused as out of range before dedupe would be asked.
        """
        idle = self.config.evict_idle_us
        reg = self.registry
        if idle is None or not reg.device_count:
            return []
        last = np.asarray(reg.last_arrival_us, np.int64)
        keep = (last >= now - idle) | (last == NONE)
        series_device = reg.series_device().astype(np.int64)
        open_series = self.windows.series_open()
        if len(open_series):
            keep[series_device[open_series]] = True
        if keep.all():
            return []
        gone = np.flatnonzero(~keep)
        why = f"device forgotten after {span_s(idle)} of silence"
        events = self.series_alarms.forget(np.flatnonzero(~keep[series_device]), now, why)
        events += self.device_rules.forget(gone, now, why)
        names = [f"{reg.sites[d]}/{reg.devices[d]}" for d in gone.tolist()]
        n_series = len(reg.names)
        dev_map, series_map = reg.compact(keep)
        self.windows.remap_series(series_map)
        self.series_alarms.compact(series_map)
        self.device_rules.compact(dev_map)
        self.observer.evicted(len(names), n_series - len(reg.names))
        log.info(
            "evicted %d idle device(s) and %d series (%s): %s%s",
            len(names),
            n_series - len(reg.names),
            why,
            ", ".join(names[:5]),
            "..." if len(names) > 5 else "",
        )
        return events


def span_s(us: int) -> str:
    """Say a duration in the largest whole unit (``32 days``, ``6 h``, ``90 s``)."""
    seconds = us // 1_000_000
    for unit, size in (("days", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
