"""What the connections of one fleet share on its event loop: writes and housekeeping.

aiomqtt drives each connection on its own, which is right for one client and costly
for 20,000 on one loop (profiled with py-spy on the bench machine):

- **writes.** When paho queues a packet it asks for the socket to be watched for
  writing; aiomqtt does that with ``call_soon_threadsafe(loop.add_writer, ...)``, so
  every publish costs a wake-up byte through the loop's self-pipe, two ``epoll_ctl``
  calls (add, then remove the writer) and one more pass of the loop before the
  PUBLISH leaves. :class:`FleetIo` instead collects the connections that have
  something to send and writes them all in one callback at the next pass of the loop
  (no system call but the ``send`` itself). Only when a socket buffer is full does a
  connection fall back to aiomqtt's writer, which says when it can go on.
- **housekeeping.** aiomqtt runs paho's ``loop_misc`` (keepalive pings, the detection
  of a broker that stopped answering them) from a task per client that sleeps one
  second: 20,000 timers a second. :class:`FleetIo` runs one sweep task that calls
  ``loop_misc`` on a slice of the connections every :data:`SWEEP_TICK_S`, so that
  each connection gets it once per ``housekeeping_s`` (see
  :func:`simulators.aio_link.housekeeping_period`); aiomqtt's per-client task still
  exists, but waits on a future with no timer.

Both are used only from the event loop's own thread; a packet queued from another
thread (paho's CONNECT, sent from aiomqtt's executor thread) takes aiomqtt's path.
The hooks are in :class:`simulators.aio_link._FleetClient`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections import deque
from typing import Protocol

__all__ = ["SWEEP_TICK_S", "FleetIo", "Kept"]

SWEEP_TICK_S = 0.1
"""How often the housekeeping sweep wakes (it does a slice of the connections).

Small slices, because a slice is one callback and every PUBACK waits behind it:
20,000 connections housekept every 10 s are 2,000 ``loop_misc`` calls a second
(~24 µs each on the bench machine), a ~50 ms stall if done at once each second,
~5 ms ten times a second."""


class Kept(Protocol):
    """A connection served by a :class:`FleetIo`."""

    def write_pending(self) -> None:
        """Write what paho has queued (on the loop)."""

    def housekeep(self) -> bool:
        """Run paho's ``loop_misc``; return False once the connection is gone."""


class FleetIo:
    """One write flush per pass of the loop and one housekeeping sweep, for many clients.

    Create it on the running loop; :meth:`close` it when the fleet ends.
    """

    def __init__(self, *, housekeeping_s: float, tick_s: float = SWEEP_TICK_S) -> None:
        if housekeeping_s <= 0:
            raise ValueError(f"housekeeping_s must be > 0; got {housekeeping_s}")
        self.loop = asyncio.get_running_loop()
        self.thread_id = threading.get_ident()
        self.housekeeping_s = housekeeping_s
        self.tick_s = min(tick_s, housekeeping_s)
        self.flushes = 0
        """Flush callbacks run (each writes every connection that had something queued)."""
        self.sweeps = 0
        self._writes: list[Kept] = []
        self._flush_scheduled = False
        self._kept: dict[Kept, asyncio.Future[None]] = {}
        self._rota: deque[Kept] = deque()
        self._sweeper: asyncio.Task[None] | None = None

    # -- writes -----------------------------------------------------------------------------
    def on_loop(self) -> bool:
        """Whether the caller runs on the loop's thread (where the batched path is safe)."""
        return threading.get_ident() == self.thread_id

    def want_write(self, conn: Kept) -> None:
        """Have ``conn`` write what it queued at the next pass of the loop (on the loop)."""
        self._writes.append(conn)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        writes, self._writes = self._writes, []
        self.flushes += 1
        for conn in writes:
            conn.write_pending()

    # -- housekeeping -----------------------------------------------------------------------
    async def keep(self, conn: Kept) -> None:
        """Housekeep ``conn`` until its connection is gone (aiomqtt's misc task awaits this)."""
        done = self.loop.create_future()
        self._kept[conn] = done
        self._rota.append(conn)
        if self._sweeper is None:
            self._sweeper = self.loop.create_task(self._sweep(), name="fleet-housekeeping")
        try:
            await done
        finally:
            self._kept.pop(conn, None)

    @property
    def kept(self) -> int:
        """Connections being housekept."""
        return len(self._kept)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.sweep_once()

    def sweep_once(self) -> int:
        """Housekeep the next slice of connections; return how many were done."""
        self.sweeps += 1
        kept, rota = self._kept, self._rota
        due = math.ceil(len(kept) * self.tick_s / self.housekeeping_s)
        done = 0
        # The rota may hold connections that left since (dropped when met): bounded by
        # its length, so one sweep never goes round twice.
        for _ in range(len(rota)):
            if done >= due:
                break
            conn = rota.popleft()
            future = kept.get(conn)
            if future is None or future.done():
                continue
            done += 1
            try:
                alive = conn.housekeep()
            except Exception as exc:  # the client's own task raises it, as aiomqtt's would
                future.set_exception(exc)
                continue
            if alive:
                rota.append(conn)
            else:
                future.set_result(None)
        return done

    def close(self) -> None:
        """Stop the sweep (connections still kept are left to their own tasks' ends)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def aclose(self) -> None:
        """Stop the sweep and wait for it to end."""
        sweeper = self._sweeper
        self.close()
        if sweeper is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
