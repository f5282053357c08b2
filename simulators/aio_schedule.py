"""The schedule of an :class:`~simulators.aio_fleet.AsyncFleet`: one task for every device.

The same walk as :meth:`simulators.fleet.Fleet.run` (same order, same offsets, same
values, so the same readings for a seed), but instead of publishing, each due event
is rendered and put on its device's bounded queue, which sends it over the device's
own connection at once if nothing is in flight there. One task and one timer for the
whole fleet, not one per device.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from simulators.aio_device import FleetDevice, Item
from simulators.aio_labels import LabelWriter
from simulators.aio_report import AsyncFleetReport
from simulators.fleet_report import label_for
from simulators.timebase import Timebase
from simulators.wire import format_time

__all__ = ["YIELD_EVERY", "run_schedule"]

YIELD_EVERY = 200
"""Devices rendered between two yields to the event loop when the schedule is behind
(or unthrottled): a few milliseconds of work, far below asyncio's slow-callback
threshold."""


async def run_schedule(
    devices: list[FleetDevice],
    *,
    report: AsyncFleetReport,
    labels: LabelWriter,
    timebase: Timebase,
    interval_s: float,
    duration_s: float | None,
    early_s: float,
) -> None:
    """Walk the devices in schedule order until ``duration_s``, queueing each due event.

    Each event goes on its device's queue, sent from there in order, one PUBACK at a time.
    Throttled, an event is queued when due (a full queue sheds its oldest); unthrottled,
    as fast as the queues take them (backpressure). Started anomalies become labels.
    """
    throttled = timebase.throttled
    queue_event = _queue_event(report, labels, timebase, interval_s)
    since_yield = 0
    tick = 0
    while True:
        base = tick * interval_s
        if duration_s is not None and base >= duration_s:
            return
        for device in devices:
            offset = base + device.sim.phase_s
            if duration_s is not None and offset >= duration_s:
                return
            if throttled:
                remaining = timebase.due_in(offset)
                if remaining > early_s:
                    await asyncio.sleep(remaining)
                    since_yield = 0
                    remaining = timebase.due_in(offset)
                report.lag.add(-remaining if remaining < 0 else 0.0)
            since_yield += 1
            if since_yield >= YIELD_EVERY:
                since_yield = 0
                await asyncio.sleep(0)
            item = queue_event(device, tick, offset)
            if item is not None:
                await device.put(item)  # unthrottled: as fast as the broker acknowledges
        tick += 1


def _queue_event(
    report: AsyncFleetReport, labels: LabelWriter, timebase: Timebase, interval_s: float
) -> Callable[[FleetDevice, int, float], Item | None]:
    """Return what renders a device's event at a tick and queues it (throttled).

    Unthrottled, the event is returned instead, for the caller to wait for room.
    """
    loop = asyncio.get_running_loop()
    start_epoch = timebase.start_epoch
    start_dt = timebase.start
    throttled = timebase.throttled

    def queue_event(device: FleetDevice, tick: int, offset: float) -> Item | None:
        sim = device.sim
        for anomaly in sim.plan.step(tick):
            report.labels += 1
            labels.add(label_for(sim, anomaly, timebase, interval_s))
        values = sim.values(tick, start_epoch + offset)
        report.duration_s = offset
        if values is None:
            report.silent += 1
            return None
        if device.killed:
            report.killed_ticks += 1
            return None
        payload = sim.render(values, format_time(start_dt + timedelta(seconds=offset)))
        report.events += 1
        report.readings += len(values)
        report.bytes += len(payload)
        item = (sim.topic, payload, loop.time())
        if throttled:
            device.put_nowait(item)
            return None
        return item

    return queue_event
