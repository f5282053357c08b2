"""The pipelined writer's queue and durability marks.

:class:`Submissions` numbers each submitted body, coalesces queued bodies into
requests of about ``batch_size`` lines for the senders, and keeps the marks: which
numbers are settled (durable, or failed for good), hence ``durable_through``, and the
errors still to raise to the flush that covers them. Its methods run with
:attr:`Submissions.cond` held by the caller (:mod:`gateway.influx.pipeline`), except
where they say otherwise.

Coalescing adapts to the load: while no sender is busy, pending bodies leave as one
request once the oldest has waited 20 ms (``LINGER_S``, enough to gather what every
shard submits for one batch); while requests are in flight, bodies wait until
``batch_size`` lines are pending or the senders are free again. So a light load is
written without waiting for a full batch, and a heavy one still travels in requests of
about ``batch_size`` lines.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from contract.errors import StorageError
from gateway.influx.spill import split_lines
from gateway.influx.writer import Precision

__all__ = ["Body", "FlushTimeoutError", "Request", "Submissions", "WriterClosedError"]

log = logging.getLogger(__name__)

_FULL_WAIT_S = 1.0
LINGER_S = 0.02
"""How long pending bodies wait for company when no sender is busy: long enough to
gather the bodies every shard submits for one source batch into one request."""


class FlushTimeoutError(StorageError):
    """``flush`` gave up waiting: bodies submitted before it are not all durable yet."""

    def __init__(self, message: str, *, target: int, durable_through: int) -> None:
        super().__init__(message)
        self.target = target
        self.durable_through = durable_through


class WriterClosedError(StorageError):
    """The writer was closed: it takes no more bodies."""


@dataclass(frozen=True, slots=True)
class Body:
    """One submitted body and its sequence number."""

    seq: int
    body: bytes
    lines: int
    precision: Precision


@dataclass(frozen=True, slots=True)
class Request:
    """Consecutive bodies of one precision, sent as one request."""

    bodies: tuple[Body, ...]
    lines: int
    precision: Precision

    @property
    def first(self) -> int:
        """The sequence number of the first body."""
        return self.bodies[0].seq

    @property
    def last(self) -> int:
        """The sequence number of the last body."""
        return self.bodies[-1].seq

    def payload(self) -> bytes:
        """Return the request's body: its bodies joined."""
        if len(self.bodies) == 1:
            return self.bodies[0].body
        return b"".join(b.body for b in self.bodies)

    def split(self) -> list[bytes]:
        """Return the request's lines (to isolate refused points)."""
        return [line for b in self.bodies for line in split_lines(b.body)]


class Submissions:
    """Queue and marks of one writer (see the module docstring).

    ``stop`` is the writer's: set, waits end with :class:`WriterClosedError`. ``busy``
    describes what is still in flight, for a flush that times out.
    """

    def __init__(
        self,
        batch_size: int,
        max_pending_lines: int,
        stop: threading.Event,
        busy: Callable[[], str],
        senders: int = 1,
    ) -> None:
        self.cond = threading.Condition()
        self._senders = senders
        self._idle_senders = 0  # senders waiting in take()
        self._pending_since = 0.0  # when the oldest pending body was queued
        self._batch_size = batch_size
        self._max_pending_lines = max_pending_lines
        self._stop = stop
        self._busy = busy
        self.closed = False
        self.submitted = 0
        self._pending: deque[Body] = deque()
        self._pending_lines = 0
        self._ready: deque[Request] = deque()
        self._ready_lines = 0
        self._settled_through = 0
        self._settled: list[tuple[int, int]] = []  # heap of ranges settled out of order
        self._failed_at: int | None = None
        self._failures: list[tuple[int, BaseException]] = []  # (last seq, error), unreported
        self.blocked = False
        self.blocked_seconds = 0.0

    @property
    def queued_lines(self) -> int:
        """Lines submitted and not yet taken by a sender."""
        return self._pending_lines + self._ready_lines

    def check_open(self) -> None:
        """Raise :class:`WriterClosedError` once the writer is closed."""
        if self.closed:
            raise WriterClosedError("the InfluxDB writer is closed")

    def durable(self) -> int:
        """Return the highest number such that every body up to it is durable."""
        if self._failed_at is None:
            return self._settled_through
        return min(self._settled_through, self._failed_at - 1)

    def add(self, body: bytes, lines: int, precision: Precision) -> int:
        """Give a body its number and queue it (waiting for room); return the number.

        An empty body is settled at once.
        """
        if lines > 0 and body:
            self._wait_for_room(lines)
        self.submitted += 1
        seq = self.submitted
        if lines <= 0 or not body:
            self.settle(seq, seq, None)
            return seq
        self._pending.append(Body(seq, body, lines, precision))
        self._pending_lines += lines
        if len(self._pending) == 1:
            self._pending_since = time.monotonic()
            self.cond.notify_all()  # an idle sender times the linger from now
        if self._pending_lines >= self._batch_size:
            self.dispatch(everything=False)
        return seq

    def add_settled(self) -> int:
        """Give a body already durable (written inline) its number; return it."""
        self.submitted += 1
        self.settle(self.submitted, self.submitted, None)
        return self.submitted

    def _wait_for_room(self, lines: int) -> None:
        limit = self._max_pending_lines
        started = None
        try:
            while (queued := self.queued_lines) and queued + lines > limit:
                if started is None:
                    started = time.monotonic()
                    self.blocked = True
                    log.info("InfluxDB writer queue full (%d lines): submit waits", queued)
                # Whatever waits must be on its way, or room would never come.
                self.dispatch(everything=True)
                self.cond.wait(_FULL_WAIT_S)
                self.check_open()
        finally:
            if started is not None:
                self.blocked = False
                self.blocked_seconds += time.monotonic() - started

    def dispatch(self, *, everything: bool) -> None:
        """Coalesce pending bodies into requests of about ``batch_size`` lines."""
        size = self._batch_size
        made = False
        while self._pending and (everything or self._pending_lines >= size):
            first = self._pending.popleft()
            bodies, n = [first], first.lines
            while (
                self._pending
                and self._pending[0].precision == first.precision
                and n + self._pending[0].lines <= size
            ):
                body = self._pending.popleft()
                bodies.append(body)
                n += body.lines
            self._pending_lines -= n
            self._ready.append(Request(tuple(bodies), n, first.precision))
            self._ready_lines += n
            made = True
        if made:
            self.cond.notify_all()

    def take(self) -> Request | None:
        """Wait for a request to send; None once the writer stops.

        While no other sender is busy, what is pending leaves as one request once the
        oldest of it has waited ``LINGER_S``: a light load is not held back for a full
        batch. While one is busy, bodies wait for ``batch_size`` lines or for it.
        """
        while not self._ready and not self._stop.is_set():
            timeout = None
            if self._pending and self._idle_senders + 1 == self._senders:
                timeout = self._pending_since + LINGER_S - time.monotonic()
                if timeout <= 0:
                    self.dispatch(everything=True)
                    continue
            self._idle_senders += 1
            self.cond.wait(timeout)
            self._idle_senders -= 1
        if self._stop.is_set():
            if self._ready:
                log.error("InfluxDB writer stopped with %d lines not sent", self._ready_lines)
            return None
        request = self._ready.popleft()
        self._ready_lines -= request.lines
        self.cond.notify_all()  # room in the queue
        return request

    def settle(self, first: int, last: int, error: BaseException | None) -> None:
        """Mark bodies ``first..last`` settled: durable, or failed with ``error``."""
        if error is not None:
            self._failures.append((last, error))
            if self._failed_at is None or first < self._failed_at:
                self._failed_at = first
        heapq.heappush(self._settled, (first, last))
        while self._settled and self._settled[0][0] == self._settled_through + 1:
            self._settled_through = heapq.heappop(self._settled)[1]
        self.cond.notify_all()

    def wait_settled(self, target: int, deadline: float | None) -> None:
        """Wait until every body up to ``target`` is settled; raise its first error."""
        while self._settled_through < target:
            if self._stop.is_set():
                raise WriterClosedError(
                    f"the InfluxDB writer closed with bodies up to {target} not all durable"
                )
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                durable = self.durable()
                raise FlushTimeoutError(
                    f"bodies up to #{target} not durable in time: durable through"
                    f" #{durable}, {self.queued_lines} lines queued, {self._busy()}",
                    target=target,
                    durable_through=durable,
                )
            self.cond.wait(_FULL_WAIT_S if remaining is None else min(remaining, _FULL_WAIT_S))
        covered = [f for f in self._failures if f[0] <= target]
        if covered:
            self._failures = [f for f in self._failures if f[0] > target]
            raise covered[0][1]
