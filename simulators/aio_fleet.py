"""A fleet with one MQTT connection per device, on one asyncio event loop.

:class:`AsyncFleet` runs the same :class:`~simulators.fleet.SimDevice` objects as the
thread-based :class:`~simulators.fleet.Fleet` (same signal and anomaly models, same
schedule, same labels, so the same readings for the same seed), but each device has
its own MQTT connection over aiomqtt (:mod:`simulators.aio_device`,
:mod:`simulators.aio_link`): its own client id and credentials, a retained birth on
its status topic, and a last will that the broker publishes if the connection dies.

A run has four phases:

1. **ramp**: every device connects at its own moment from
   :meth:`~simulators.connections.ConnectionPlan.ramp_offsets` (shuffled slots of
   ``1 / ramp_rate`` s, randomised inside the slot), so 20,000 devices do not connect
   in the same millisecond. The schedule starts once all are connected, or
   ``ramp_timeout_s`` after the last slot (stragglers keep trying and queue their
   readings meanwhile);
2. **schedule**: one task walks the devices in schedule order, as ``Fleet.run`` does,
   renders each due event and puts it on that device's bounded queue; each device
   sends its queue in order, one PUBACK at a time; the time from the queue to the
   PUBACK is the publish latency (``puback``), and from the PUBLISH to the PUBACK
   without the wait in the queue, ``publish_to_puback``. ``drop_fraction`` of the
   devices can be killed at ``drop_after_s``;
3. **drain**: wait (up to ``drain_timeout_s``) for every queued event and label to be
   acknowledged, except the events of devices that never connected (``stranded``);
4. **close**: every connected device publishes its retained ``shutdown`` status and
   disconnects cleanly; devices still trying give up.

Nothing blocking runs on the event loop: aiomqtt opens connections in its executor
thread, labels are written and progress lines printed from worker threads, and the
schedule yields to the loop at least every :data:`YIELD_EVERY` devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from contract import TopicScheme
from edge.mqtt import MqttSettings
from simulators.aio_device import FleetContext, FleetDevice
from simulators.aio_heap import HeapKeeper
from simulators.aio_labels import LabelWriter
from simulators.aio_link import housekeeping_period
from simulators.aio_report import RUNNER, AsyncFleetReport
from simulators.aio_schedule import YIELD_EVERY, run_schedule
from simulators.aio_shared import FleetIo
from simulators.connections import ConnectionPlan
from simulators.labels import LabelSink
from simulators.process import Usage, peak_rss_bytes
from simulators.sim_device import SimDevice
from simulators.timebase import Timebase

__all__ = ["RUNNER", "YIELD_EVERY", "AsyncFleet", "AsyncFleetReport", "ProgressFn"]

log = logging.getLogger(__name__)

DRAIN_CHECK_S = 0.5
"""How often the drain checks whether only devices that never connected still wait."""

ProgressFn = Callable[[AsyncFleetReport], str]
"""Formats a progress line from the report (on the loop; it is printed off the loop)."""


async def _warm_up_executor(threads: int) -> None:
    """Start the executor's threads now rather than in the middle of the ramp.

    A thread pool starts a thread when a job finds none idle, and ``Thread.start``
    waits, on the event loop, for the new thread to run.
    """
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(None, time.sleep, 0.01) for _ in range(threads)))


class AsyncFleet:
    """Many devices, one MQTT connection each, on one event loop.

    ``duration_s`` (simulated seconds) ends the schedule; None runs until
    :meth:`stop`. ``tls`` is the context from :func:`simulators.aio_link.tls_context`
    when ``settings.tls`` is set. ``label_sinks`` are written from a worker thread;
    with ``labels_topic`` labels are also published there (QoS 1) over a connection
    of their own. ``freeze_heap`` keeps the cyclic garbage collector off the fleet's
    long-lived objects for the run (:mod:`simulators.aio_heap`).
    """

    def __init__(
        self,
        devices: Sequence[SimDevice],
        *,
        settings: MqttSettings,
        plan: ConnectionPlan,
        topics: TopicScheme,
        timebase: Timebase,
        interval_s: float,
        duration_s: float | None,
        label_sinks: Iterable[LabelSink] = (),
        labels_topic: str | None = None,
        qos: int = 1,
        tls: ssl.SSLContext | None = None,
        progress: ProgressFn | None = None,
        progress_every_s: float = 5.0,
        lag_tolerance_s: float | None = None,
        early_s: float = 0.005,
        drain_timeout_s: float = 30.0,
        freeze_heap: bool = True,
    ) -> None:
        self.report = AsyncFleetReport.for_schedule(
            len(devices), interval_s=interval_s, timebase=timebase, lag_tolerance_s=lag_tolerance_s
        )
        self.sims = list(devices)
        self.settings = settings
        self.plan = plan
        self.topics = topics
        self.timebase = timebase
        self.interval_s = interval_s
        self.duration_s = duration_s
        self.label_sinks = list(label_sinks)
        self.labels_topic = labels_topic
        self.qos = qos
        self.tls = tls
        self.progress = progress
        self.progress_every_s = progress_every_s
        self.early_s = early_s
        self.drain_timeout_s = drain_timeout_s
        self.freeze_heap = freeze_heap
        self.drained = False
        for sim in self.sims:
            if not sim.topic:
                sim.topic = topics.telemetry(sim.site, sim.device)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = threading.Event()

    # -- control ------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the run to end (from any thread): the schedule stops, then drain and close."""
        self._stop_requested.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)

    def run_blocking(
        self, *, debug: bool = False, slow_callback_s: float | None = None
    ) -> AsyncFleetReport:
        """Run on a new event loop in this thread; return the report.

        The loop's default executor, through which aiomqtt opens connections, gets
        ``plan.connect_threads`` threads. ``debug`` and ``slow_callback_s`` turn on
        asyncio's debug mode and set its slow-callback threshold.
        """

        async def main() -> AsyncFleetReport:
            loop = asyncio.get_running_loop()
            if slow_callback_s is not None:
                loop.slow_callback_duration = slow_callback_s
            loop.set_default_executor(
                ThreadPoolExecutor(self.plan.connect_threads, thread_name_prefix="sim-connect")
            )
            return await self.run()

        return asyncio.run(main(), debug=debug)

    # -- the run ------------------------------------------------------------------------
    async def run(self) -> AsyncFleetReport:
        """Ramp up, run the schedule, drain, close; return the report."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = stop = asyncio.Event()
        if self._stop_requested.is_set():
            stop.set()
        ctx = self._context()
        devices = [
            FleetDevice(sim, ctx, status_topic=self.topics.status(sim.site, sim.device))
            for sim in self.sims
        ]
        labels = LabelWriter(
            sinks=self.label_sinks,
            topic=self.labels_topic,
            settings=self.settings,
            plan=self.plan,
            tls=self.tls,
        )
        helpers = [asyncio.create_task(labels.run(), name="labels")]
        heap = HeapKeeper(enabled=self.freeze_heap)
        try:
            if await self._ramp(ctx, devices, helpers, heap):
                heap.seal()
                await self._run_schedule(ctx, devices, labels, helpers)
        finally:
            await self._finish(ctx, devices, labels, helpers)
            heap.release()
        return self.report

    def _context(self) -> FleetContext:
        return FleetContext(
            settings=self.settings,
            plan=self.plan,
            report=self.report,
            qos=self.qos,
            tls=self.tls,
            connecting=asyncio.Semaphore(self.plan.max_connecting),
            rng=random.Random(f"{self.plan.seed}/reconnect"),
            io=FleetIo(
                housekeeping_s=housekeeping_period(
                    self.settings.keepalive_s, self.plan.housekeeping_s
                )
            ),
        )

    async def _ramp(
        self,
        ctx: FleetContext,
        devices: list[FleetDevice],
        helpers: list[asyncio.Task[None]],
        heap: HeapKeeper,
    ) -> bool:
        """Start every device's life; wait for the ramp; return whether to run the schedule."""
        assert self._stop is not None
        loop = asyncio.get_running_loop()
        report = self.report
        t0 = loop.time()
        if self.progress is not None:
            helpers.append(asyncio.create_task(self._show_progress(t0), name="progress"))
        await _warm_up_executor(self.plan.connect_threads)
        ramp0 = Usage.now()
        offsets = self.plan.ramp_offsets(len(devices))
        for device, offset in zip(devices, offsets, strict=True):
            device.task = asyncio.create_task(device.live(t0 + offset))
        freezer = asyncio.create_task(heap.during_ramp(), name="heap")
        try:
            ramp_limit = max(offsets) + self.plan.ramp_timeout_s
            await self._until_stopped(ctx.all_connected.wait(), ramp_limit)
        finally:
            freezer.cancel()
            await asyncio.gather(freezer, return_exceptions=True)
        report.ramp_s = loop.time() - t0
        report.connected_after_ramp = report.connected_now
        report.ramp_usage = Usage.now().since(ramp0)
        if self._stop.is_set():
            return False
        if report.connected_now == 0:
            report.error = (
                f"no device could connect to the MQTT broker at {self.settings.url} in"
                f" {report.ramp_s:.0f} s ({report.connect_failures:,} failed attempts, the"
                f" last: {report.last_connect_error}); is it running, and does it accept"
                " these clients?"
            )
            return False
        return True

    async def _finish(
        self,
        ctx: FleetContext,
        devices: list[FleetDevice],
        labels: LabelWriter,
        helpers: list[asyncio.Task[None]],
    ) -> None:
        """Drain, close every device, stop the helpers; complete the report."""
        report = self.report
        report.connected_at_end = report.connected_now
        report.phase = "drain"
        await self._drain(ctx, devices, labels)
        report.phase = "close"
        await self._close(ctx, devices)
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        if ctx.io is not None:
            await ctx.io.aclose()
        report.label_errors += labels.dropped
        report.phase = "done"
        report.peak_rss_bytes = peak_rss_bytes()

    async def _run_schedule(
        self,
        ctx: FleetContext,
        devices: list[FleetDevice],
        labels: LabelWriter,
        helpers: list[asyncio.Task[None]],
    ) -> None:
        report = self.report
        report.connected_min = report.connected_now
        report.phase = "schedule"
        ctx.in_schedule = True
        steady0 = Usage.now()
        self.timebase.begin()
        if self.plan.drop_fraction > 0:
            helpers.append(asyncio.create_task(self._drop(devices), name="drop"))
        try:
            await self._until_stopped(
                run_schedule(
                    devices,
                    report=report,
                    labels=labels,
                    timebase=self.timebase,
                    interval_s=self.interval_s,
                    duration_s=self.duration_s,
                    early_s=self.early_s,
                )
            )
        finally:
            ctx.in_schedule = False
            report.stopped_early = self._stop is not None and self._stop.is_set()
            report.wall_s = self.timebase.elapsed()
            report.steady = Usage.now().since(steady0)

    async def _until_stopped(
        self, work: Coroutine[Any, Any, Any], timeout: float | None = None
    ) -> None:
        """Run ``work`` until it ends, :meth:`stop` is called, or ``timeout`` passes."""
        assert self._stop is not None
        task = asyncio.create_task(work)
        stopper = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({task, stopper}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            for t in (task, stopper):
                t.cancel()
            await asyncio.gather(stopper, return_exceptions=True)
            with contextlib.suppress(asyncio.CancelledError):
                await task  # its own failure, if any, is the run's

    async def _drop(self, devices: list[FleetDevice]) -> None:
        await asyncio.sleep(self.plan.drop_after_s)
        loop = asyncio.get_running_loop()
        rejoin = self.plan.rejoin_after_s
        victims = self.plan.victims(devices)
        rejoin_at = None if rejoin is None else loop.time() + rejoin
        for device in victims:
            device.kill(rejoin_at)
        self.report.killed += len(victims)
        log.info("killed %d connections without DISCONNECT", len(victims))

    async def _show_progress(self, t0: float) -> None:
        assert self.progress is not None
        loop = asyncio.get_running_loop()
        report = self.report
        while True:
            await asyncio.sleep(self.progress_every_s)
            if report.phase == "ramp":
                report.ramp_s = loop.time() - t0
            elif report.phase == "schedule":
                report.wall_s = self.timebase.elapsed()
            line = self.progress(report)
            # Printing can block on a full pipe: never on the event loop.
            await asyncio.to_thread(print, line, file=sys.stderr, flush=True)

    # -- the end ---------------------------------------------------------------------------
    async def _drain(
        self, ctx: FleetContext, devices: list[FleetDevice], labels: LabelWriter
    ) -> None:
        """Wait for the backlog to be acknowledged, but not for devices that never connected.

        A device that never held a connection (the open-file limit, a broker that
        refuses it) keeps its readings queued, as a real one would; waiting the whole
        drain timeout for them proves nothing. They are counted as ``stranded``.
        """
        loop = asyncio.get_running_loop()
        backlog = ctx.backlog
        deadline = loop.time() + self.drain_timeout_s
        stranded = 0
        while backlog.pending > 0:
            stranded = sum(d.queued for d in devices if not d.ever_connected)
            remaining = deadline - loop.time()
            if backlog.pending <= stranded or remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(backlog.idle.wait(), min(DRAIN_CHECK_S, remaining))
        self.report.stranded = stranded if backlog.pending > 0 else 0
        self.drained = backlog.pending <= self.report.stranded
        if labels.active and not await labels.join(max(0.0, deadline - loop.time())):
            self.drained = False

    async def _close(self, ctx: FleetContext, devices: list[FleetDevice]) -> None:
        ctx.closing = True
        for device in devices:
            device.close()
        lives = [d.task for d in devices if d.task is not None]
        # Goodbyes take a round trip; a device still connecting needs its timeout.
        _done, late = await asyncio.wait(lives, timeout=self.plan.connect_timeout_s + 5)
        for task in late:
            task.cancel()
        for outcome in await asyncio.gather(*lives, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.warning("a device ended with an error: %r", outcome)
