"""Keep Python's cyclic garbage collector off the hot path of a big fleet.

Every connected device of an :class:`~simulators.aio_fleet.AsyncFleet` is a few
hundred long-lived Python objects (its aiomqtt and paho clients, socket, futures,
tasks, queue), a few million for 20,000 devices. CPython's collector scans the
oldest generation whenever it has grown by a quarter, and each full scan visits
every tracked object: measured on the 2-core bench machine with 5,000 devices at
1 event/s, 46 full collections took 66 s in all, the longest 2.8 s, during which no
PUBACK was read. That, not MQTT, was most of the publish-latency tail.

:class:`HeapKeeper` moves the fleet's long-lived objects out of the collector's
reach with :func:`gc.freeze` (they stay alive and reference-counted as before, only
the cyclic collector no longer scans them):

- during the ramp, every :data:`RAMP_FREEZE_EVERY_S`, after a young collection
  (:meth:`HeapKeeper.settle`), so connections made so far are never scanned again;
- when the schedule starts, after a full collection (:meth:`HeapKeeper.seal`), so the
  schedule pays only for the garbage it makes itself;
- during the schedule the youngest generation is collected every
  :data:`YOUNG_THRESHOLD` allocations rather than CPython's 700: at 2,000 events/s
  a young collection otherwise runs ~100 times a second and promotes every publish
  in flight (its futures, coroutines and queue items) to the older generations,
  which then fill with objects that die a moment later and trigger full
  collections of nothing (measured: one every 1-2 s, ``collected=0``);
- at the end of the run everything is unfrozen and the thresholds are restored
  (:meth:`HeapKeeper.release`), so a process that runs fleets one after the other
  (tests) does not keep them.

The price: an object frozen while alive and later dropped as part of a reference
cycle is not reclaimed until :meth:`HeapKeeper.release`. In a fleet that is the
client of a connection that ends during the run (killed, lost), a few tens of kB
each.
"""

from __future__ import annotations

import asyncio
import gc

__all__ = ["RAMP_FREEZE_EVERY_S", "YOUNG_THRESHOLD", "HeapKeeper"]

RAMP_FREEZE_EVERY_S = 1.0
"""How often the ramp's new connections are frozen: ~500 connections at the default
ramp rate, so no full collection ever has the whole fleet to scan."""

YOUNG_THRESHOLD = 50_000
"""Allocations between two young collections during the schedule (a few ms each)."""


class HeapKeeper:
    """Freezes a fleet's long-lived objects; ``enabled=False`` leaves the collector be."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.freezes = 0
        self._was_frozen = gc.get_freeze_count()
        self._thresholds: tuple[int, int, int] | None = None

    def settle(self) -> None:
        """Collect the young generations and freeze what survived (cheap: no full scan)."""
        if self.enabled:
            gc.collect(1)
            gc.freeze()
            self.freezes += 1

    def seal(self) -> None:
        """Collect everything once and freeze what survived (before the schedule)."""
        if self.enabled:
            gc.collect()
            gc.freeze()
            self.freezes += 1
            if self._thresholds is None:
                self._thresholds = gc.get_threshold()
                gc.set_threshold(YOUNG_THRESHOLD, *self._thresholds[1:])

    async def during_ramp(self, every_s: float = RAMP_FREEZE_EVERY_S) -> None:
        """Settle every ``every_s`` until cancelled (a task for the ramp)."""
        while True:
            await asyncio.sleep(every_s)
            self.settle()

    def release(self) -> None:
        """Unfreeze what this keeper froze (if nothing else had frozen objects before)."""
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
        if self.enabled and self.freezes and self._was_frozen == 0:
            gc.unfreeze()
