"""The life of one device of an :class:`~simulators.aio_fleet.AsyncFleet`.

A :class:`FleetDevice` waits for its moment in the ramp-up, connects (retrying with
capped exponential backoff and full jitter, by tenacity), publishes its retained
birth, then sends its bounded outgoing queue in order, one PUBACK at a time, until
the connection is lost (it reconnects after a short random pause, and sends again
what was not acknowledged), it is killed (``drop_fraction``: no DISCONNECT, so the
broker publishes its last will), or the fleet closes (it publishes its retained
``shutdown`` status and disconnects cleanly).

While connected a device has two tasks: its life and a watcher of the connection;
aiomqtt adds its housekeeping task, which in a fleet waits for the fleet's one
housekeeping sweep (:mod:`simulators.aio_shared`). None of them polls: each waits on
a future or the socket. Sending needs no task: the schedule's queueing sends at once
when nothing is in flight (:meth:`FleetDevice.put_nowait`), and the PUBACK callback
sends the next event queued (:meth:`FleetDevice._on_sent`), so an event costs no task
wake-up, no future and no timer (a task per device that awaited its queue, then its
PUBACK, was two wake-ups per event; measured in ``docs/simulators.md``).

Closing is O(1) per device: a connected device is told through its own
``session_end`` future and a waiting one is cancelled, because thousands of waiters
on one shared :class:`asyncio.Event` make every timed-out wait an O(n) removal.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity import wait_random_exponential as full_jitter

from contract.errors import BrokerError
from simulators.aio_context import Backlog, FleetContext
from simulators.aio_link import DeviceLink, LinkWill, connect_device
from simulators.aio_report import RUNNER
from simulators.device_status import birth, goodbye, last_will
from simulators.sim_device import SimDevice

__all__ = ["Backlog", "FleetContext", "FleetDevice", "Item"]  # the first two re-exported

Item = tuple[str, bytes, float]
"""An outgoing event: topic, payload and the loop time it was queued."""

_NOT_SENT = -1
"""``FleetDevice.sent_mid`` while the event in flight is not yet sent on this connection."""


class _ConnectFailed(BrokerError):
    """The device could not connect (retried with backoff, unlike a lost connection)."""


class FleetDevice:
    """One simulated device with its own MQTT connection."""

    __slots__ = (
        "_clock",
        "_on_sent_cb",
        "_room",
        "broken",
        "client_id",
        "ctx",
        "ever_connected",
        "inflight",
        "killed",
        "link",
        "pending",
        "rejoin_at",
        "sent_at",
        "sent_mid",
        "session_end",
        "sim",
        "state",
        "status_topic",
        "task",
        "username",
    )

    def __init__(self, sim: SimDevice, ctx: FleetContext, *, status_topic: str) -> None:
        self.sim = sim
        self.ctx = ctx
        self.client_id = ctx.plan.client_id(sim.site, sim.device)
        self.username = ctx.plan.username(sim.site, sim.device)
        self.status_topic = status_topic
        self.pending: deque[Item] = deque()
        """Events queued and not yet sent, oldest first (at most ``plan.queue_size``)."""
        self.inflight: Item | None = None
        """The event sent (or to send first) and not yet acknowledged."""
        self.sent_mid = _NOT_SENT
        """Packet id of ``inflight`` on the current connection."""
        self.sent_at = 0.0
        self.link: DeviceLink | None = None
        """The connection, while serving (set after the birth)."""
        self.session_end: asyncio.Future[None] | None = None
        self.broken: asyncio.Future[None] | None = None
        """Failed by a send that paho refused (the connection is gone)."""
        self.killed = False
        self.ever_connected = False
        self.rejoin_at: float | None = None
        self.state = "waiting"
        """``waiting`` (ramp, backoff, rejoin), ``connecting``, ``serving`` or ``done``."""
        self.task: asyncio.Task[None] | None = None
        self._room: asyncio.Future[None] | None = None
        self._on_sent_cb: Callable[[int], None] = self._on_sent  # bound once, not per send
        self._clock: Callable[[], float] | None = None

    @property
    def queued(self) -> int:
        """Events queued or in flight, not yet acknowledged."""
        return len(self.pending) + (self.inflight is not None)

    # -- what the fleet does to a device ----------------------------------------------------
    def put_nowait(self, item: Item) -> None:
        """Queue an event; a full queue drops its oldest (real time: the newest matter).

        Sent at once if nothing is in flight on a live connection.
        """
        pending = self.pending
        ctx = self.ctx
        if len(pending) >= ctx.plan.queue_size:
            pending.popleft()
            ctx.report.shed += 1
            ctx.backlog.settle()
        pending.append(item)
        ctx.backlog.add()
        if self.inflight is None and self.link is not None:
            self._send_next()

    async def put(self, item: Item) -> None:
        """Queue an event, waiting for room (unthrottled runs: backpressure)."""
        while len(self.pending) >= self.ctx.plan.queue_size:
            room = self._room = asyncio.get_running_loop().create_future()
            await room
        self.pending.append(item)
        self.ctx.backlog.add()
        if self.inflight is None and self.link is not None:
            self._send_next()

    # -- sending (no task: called from the schedule and from the PUBACK callback) ----------
    def _send_next(self) -> None:
        """Send the event in flight if not sent yet on this connection, else the next one."""
        link = self.link
        if link is None:
            return
        item = self.inflight
        if item is None:
            if not self.pending:
                return
            item = self.inflight = self.pending.popleft()
            room = self._room
            if room is not None and not room.done():
                room.set_result(None)
        elif self.sent_mid != _NOT_SENT:
            return  # one in flight at a time: order, and a PUBACK each
        mid = link.send(item[0], item[1], self.ctx.qos, self._on_sent_cb)
        if mid is None:
            # paho refused it: the connection is gone. The session ends and the event
            # is sent again on the next one.
            broken = self.broken
            if broken is not None and not broken.done():
                broken.set_exception(
                    BrokerError(f"{self.client_id}: cannot publish on {link.url}: not connected")
                )
            return
        self.sent_mid = mid
        assert self._clock is not None
        self.sent_at = self._clock()

    def _on_sent(self, mid: int) -> None:
        """Count packet ``mid`` acknowledged (paho's ``on_publish``) and send the next event."""
        item = self.inflight
        if item is None or mid != self.sent_mid:
            return  # from a connection this device no longer serves
        self.inflight = None
        self.sent_mid = _NOT_SENT
        assert self._clock is not None
        now = self._clock()
        report = self.ctx.report
        report.puback.add(now - item[2])
        report.wire.add(now - self.sent_at)
        report.acknowledged += 1
        self.ctx.backlog.settle()
        if self.pending:
            self._send_next()

    def kill(self, rejoin_at: float | None) -> None:
        """Cut the connection without DISCONNECT and lose what is queued."""
        self.killed = True
        self.rejoin_at = rejoin_at
        lost = self.queued
        self.pending.clear()
        self.inflight = None
        self.sent_mid = _NOT_SENT
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)
        if lost:
            self.ctx.report.discarded += lost
            self.ctx.backlog.settle(lost)
        if self.link is not None:
            self.link.abort()

    def close(self) -> None:
        """End the device's life: a goodbye if connected, at once if waiting."""
        if self.session_end is not None and not self.session_end.done():
            self.session_end.set_result(None)
        elif self.state == "waiting" and self.task is not None:
            self.task.cancel()
        # A device that is connecting sees ctx.closing once connected, and leaves.

    # -- the life ----------------------------------------------------------------------------
    async def live(self, start_at: float) -> None:
        """Connect at ``start_at`` (loop time), then stay connected until closing."""
        loop = asyncio.get_running_loop()
        ctx = self.ctx
        await asyncio.sleep(max(0.0, start_at - loop.time()))
        first = True
        try:
            while not ctx.closing:
                if self.killed:
                    if self.rejoin_at is None:
                        return
                    self.state = "waiting"
                    await asyncio.sleep(max(0.0, self.rejoin_at - loop.time()))
                    self.killed = False
                    self.rejoin_at = None
                if not first:
                    ctx.report.reconnects += 1
                first = False
                try:
                    await self._connect_and_serve()
                    return  # closed cleanly
                except _ConnectFailed:
                    continue  # gave up: closing, or killed while trying
                except BrokerError:
                    if self.killed:
                        continue
                    ctx.report.connections_lost += 1
                    self.state = "waiting"
                    # Not all at once after a broker restart: a random pause first.
                    await asyncio.sleep(ctx.rng.uniform(0, ctx.plan.backoff_min_s))
        finally:
            self.state = "done"

    async def _connect_and_serve(self) -> None:
        plan = self.ctx.plan
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_ConnectFailed),
            wait=full_jitter(multiplier=plan.backoff_min_s, max=plan.backoff_max_s),
            stop=self._give_up,
            sleep=self._backoff,
            reraise=True,
        ):
            with attempt:
                await self._session()

    def _give_up(self, _state: RetryCallState) -> bool:
        return self.ctx.closing or self.killed

    async def _backoff(self, seconds: float) -> None:
        self.state = "waiting"
        await asyncio.sleep(seconds)

    async def _session(self) -> None:
        ctx = self.ctx
        report = ctx.report
        sim = self.sim
        slots = ctx.connecting
        if slots is not None:
            await slots.acquire()
        report.connect_attempts += 1
        self.state = "connecting"
        connected = False
        try:
            async with connect_device(
                ctx.settings,
                client_id=self.client_id,
                username=self.username,
                will=LinkWill(self.status_topic, last_will(sim.site, sim.device)),
                tls=ctx.tls,
                timeout_s=ctx.plan.connect_timeout_s,
                housekeeping_s=ctx.plan.housekeeping_s,
                bind_address=ctx.plan.bind_address(self.sim.index),
                io=ctx.io,
            ) as link:
                connected = True
                if slots is not None:
                    slots.release()
                if ctx.closing:
                    return
                if self.killed:  # killed while connecting: die as the others did
                    link.abort()
                self.link = link
                self.ever_connected = True
                ctx.count_connected(+1)
                try:
                    await self._serve(link)
                finally:
                    self.link = None
                    ctx.count_connected(-1)
        except BaseException as exc:
            if not connected and slots is not None:
                slots.release()
            if not isinstance(exc, BrokerError):
                raise
            if not connected:
                report.connect_failures += 1
                report.last_connect_error = str(exc)
                raise _ConnectFailed(str(exc)) from exc
            raise

    async def _serve(self, link: DeviceLink) -> None:
        """Birth, then send until the session ends; raise if the connection is lost."""
        ctx = self.ctx
        sim = self.sim
        timeout = ctx.plan.connect_timeout_s
        loop = asyncio.get_running_loop()
        self._clock = loop.time
        end: asyncio.Future[None] = loop.create_future()
        broken: asyncio.Future[None] = loop.create_future()
        self.session_end = end
        self.state = "serving"
        lost = None
        try:
            await link.publish(
                self.status_topic,
                birth(sim.site, sim.device, runner=RUNNER, client_id=self.client_id),
                qos=1,
                retain=True,
                timeout_s=timeout,
            )
            ctx.report.births += 1
            lost = asyncio.create_task(link.wait_lost())
            self.broken = broken
            self.link = link
            self.sent_mid = _NOT_SENT  # what was in flight on a lost connection goes again
            self._send_next()
            waiting: set[asyncio.Future[Any]] = {lost, broken, end}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.session_end = None
            self.link = None
            self.broken = None
            self.sent_mid = _NOT_SENT
            outcomes: list[BaseException | None] = []
            if lost is not None:
                lost.cancel()
                outcomes.extend(await asyncio.gather(lost, return_exceptions=True))
        if end.done() and not self.killed:
            try:
                await link.publish(
                    self.status_topic,
                    goodbye(sim.site, sim.device),
                    qos=1,
                    retain=True,
                    timeout_s=timeout,
                )
            except BrokerError:
                return  # leaving anyway: the broker will publish the will instead
            ctx.report.goodbyes += 1
            return
        refused = broken.exception() if broken.done() else None  # retrieved either way
        for outcome in outcomes:
            if isinstance(outcome, BrokerError):
                raise outcome  # the watcher's error says more than a refused publish
        if refused is not None:
            raise refused
        raise BrokerError(f"{self.client_id}: connection ended")
