"""Pipelined, durable writes to InfluxDB: submit bodies now, learn later what is durable.

:class:`PipelinedWriter` takes line-protocol bodies (bytes) with :meth:`~PipelinedWriter.submit`,
which numbers each body and returns at once; background threads coalesce the bodies
into requests of about ``batch_size`` lines and keep at most ``max_in_flight`` of them
in flight (influxd 1.x answers 500 "engine: error syncing wal" under many concurrent
writes). :attr:`~PipelinedWriter.durable_through` is the highest number such that every
body up to it is durable, and :meth:`~PipelinedWriter.flush` blocks until every body
submitted before the call is. The points sink calls ``submit`` in ``write_batch`` and
``flush`` once per epoch; the MQTT messages are acknowledged only after that returns.

Durable means one of:

- stored in InfluxDB;
- appended, committed and fsynced, to the on-disk spill (:mod:`gateway.influx.spill`):
  a request failing with a transient error (5xx, 429 honouring ``Retry-After``, a
  connection error) is retried for ``spill_after_s``, then spilled. While the spill
  holds anything, new requests go to it, behind the older ones, without trying
  InfluxDB; a drainer thread sends the oldest spilled batches first (coalesced up to
  ``batch_size``), backing off while InfluxDB still fails and at most ``drain_rate``
  points/s once it answers. A 401/403/404 (configuration, not data) is spilled too.
  The spill is bounded by ``spill_max_bytes``: when it is full, the senders wait for
  the drainer, the queue fills, and ``submit`` blocks (backpressure; nothing is
  dropped, the broker keeps the unacknowledged messages);
- refused as bad data: a 4xx for the data (400, 413, 422) is bisected down to the
  refused lines, and each is handed to ``on_rejected(line, error)`` once, before the
  body counts as durable. Re-sending the good part is safe: influxd 1.x stores the good
  points of a partial write, and writing a point again overwrites it.

Without a spill (``spill_enabled=False``) a request still failing after ``retry_max_s``
is lost to the writer: ``durable_through`` stops before it for good, and the
``flush`` (or ``write``) covering it raises the error.

Order: requests leave in submission order, but with ``max_in_flight > 1`` they are
stored in whatever order they complete, and a request that had to be spilled is
stored after later ones. Points are independent and rewriting one is idempotent, so
this matters only for two writes of the same point (same series and timestamp) with
different values; :class:`~gateway.influx.resilient.ResilientWriter` keeps one request
in flight and therefore its order.

Coalescing adapts to the load: while no sender is busy, pending bodies leave as one
request once the oldest has waited 20 ms (``_LINGER_S``, enough to gather what every
shard submits for one batch); while requests are in flight, bodies wait until
``batch_size`` lines are pending or the senders are free again. So a light load is
written without waiting for a full batch, and a heavy one still travels in requests of
about ``batch_size`` lines.

Bodies are never split on the live path: a body larger than ``batch_size`` is one
request. They are cut into lines only to isolate refused points
(:func:`~gateway.influx.spill.split_lines`, which respects quoted string fields).

Threads: ``max_in_flight`` senders and, with a spill, one drainer. ``on_rejected`` runs
on one of them; it may call :meth:`~PipelinedWriter.write` on this same writer (the
gateway stores each dead letter through the writer that refused its line), which then
writes inline, synchronously, instead of queueing behind itself. It must not call
``submit`` or ``flush``.

Errors::

    StorageError
    ├── FlushTimeoutError     flush(timeout) expired before the bodies were durable
    └── WriterClosedError     submit or flush after close()
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    wait_exponential,
    wait_random_exponential,
)

from contract.errors import StorageError
from gateway.influx.spill import PackedBatch, SpillBuffer, split_lines
from gateway.influx.stats import PipelineStats
from gateway.influx.writer import BadPointsError, BatchWriter, Precision, make_writer
from gateway.settings import InfluxSettings

__all__ = [
    "FlushTimeoutError",
    "PipelinedWriter",
    "RejectHandler",
    "WriterClosedError",
    "claim_spill",
    "make_pipelined_writer",
    "spill_key",
]

log = logging.getLogger(__name__)

RejectHandler = Callable[[str, str], None]
"""Called with a line InfluxDB refused as bad data and the server's message."""

_FULL_WAIT_S = 1.0
_LINGER_S = 0.02
"""How long pending bodies wait for company when no sender is busy: long enough to
gather the bodies every shard submits for one source batch into one request."""
_LOG_EVERY_S = 30.0


class FlushTimeoutError(StorageError):
    """``flush`` gave up waiting: bodies submitted before it are not all durable yet."""

    def __init__(self, message: str, *, target: int, durable_through: int) -> None:
        super().__init__(message)
        self.target = target
        self.durable_through = durable_through


class WriterClosedError(StorageError):
    """The writer was closed: it takes no more bodies."""


@dataclass(frozen=True, slots=True)
class _Body:
    seq: int
    body: bytes
    lines: int
    precision: Precision


@dataclass(frozen=True, slots=True)
class _Request:
    bodies: tuple[_Body, ...]
    lines: int
    precision: Precision

    @property
    def first(self) -> int:
        return self.bodies[0].seq

    @property
    def last(self) -> int:
        return self.bodies[-1].seq

    def payload(self) -> bytes:
        if len(self.bodies) == 1:
            return self.bodies[0].body
        return b"".join(b.body for b in self.bodies)

    def split(self) -> list[bytes]:
        return [line for b in self.bodies for line in split_lines(b.body)]


def _drain_wait(cap: float) -> Callable[[RetryCallState], float]:
    """Wait before drain attempt ``n + 1``: a uniform draw from ``[d / 2, d]``.

    ``d = min(cap, 0.1 * 2 ** (n - 1))`` (tenacity's exponential wait, half of it fixed
    and half drawn at random), or longer if the server said when to come back.
    """
    half = wait_exponential(multiplier=0.05, max=cap / 2)
    jittered = half + wait_random_exponential(multiplier=0.05, max=cap / 2)

    def wait(state: RetryCallState) -> float:
        delay = float(jittered(state))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, StorageError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return delay

    return wait


class _DrainStopped(Exception):
    """The writer is closing: end the drain instead of attempting again."""


def _chunks(lines: Sequence[str], size: int) -> list[tuple[bytes, int]]:
    return [
        (("\n".join(lines[i : i + size]) + "\n").encode("utf-8"), len(lines[i : i + size]))
        for i in range(0, len(lines), size)
    ]


class PipelinedWriter:
    """Submit bodies without waiting; ``flush`` returns when all before it are durable.

    ``inner`` posts the requests (a :class:`~gateway.influx.writer.V1Writer`,
    :class:`~gateway.influx.writer.V3Writer` or
    :class:`~gateway.influx.writer.V2Writer`); ``spill`` is where outages go (None: no
    spill, see the module docstring). ``precision`` is that of submitted bodies unless
    ``submit`` says otherwise (``u`` for :class:`~gateway.influx.encoder.LineProtocolEncoder`
    bodies); :meth:`write` always takes nanosecond lines. ``max_in_flight`` defaults to
    ``settings.max_in_flight``. Use :func:`make_pipelined_writer` to build one from
    settings. Thread-safe.
    """

    def __init__(
        self,
        inner: BatchWriter,
        spill: SpillBuffer | None,
        *,
        settings: InfluxSettings,
        on_rejected: RejectHandler | None = None,
        precision: Precision = "u",
        max_in_flight: int | None = None,
    ) -> None:
        self._inner = inner
        self._spill = spill
        self._settings = settings
        self.on_rejected = on_rejected
        self.precision: Precision = precision
        self.max_in_flight = max_in_flight or settings.max_in_flight
        self._retry_for = settings.spill_after_s if spill is not None else settings.retry_max_s

        # _cond guards the queue and the marks; _room guards spill appends and wakes
        # the drainer and the writers waiting for room in a full spill.
        self._cond = threading.Condition()
        self._room = threading.Condition()
        self._stop = threading.Event()
        self._closed = False
        self._submitted = 0
        self._pending: deque[_Body] = deque()
        self._pending_lines = 0
        self._ready: deque[_Request] = deque()
        self._ready_lines = 0
        self._idle_senders = 0  # senders waiting for a request (under _cond)
        self._pending_since = 0.0  # when the oldest pending body was submitted
        self._listeners: tuple[Callable[[], None], ...] = ()
        self._settled_through = 0
        self._settled: list[tuple[int, int]] = []  # heap of ranges settled out of order
        self._failed_at: int | None = None
        self._failures: list[tuple[int, BaseException]] = []  # (last seq, error), unreported
        self._blocked = False
        self._blocked_seconds = 0.0

        self._slots = threading.BoundedSemaphore(self.max_in_flight)
        self._counts = threading.Lock()
        self._in_flight = 0
        self._rejected = 0
        self._spilled = 0
        self._drained = 0
        self._drain_retries = 0
        self._last_drain_log = -_LOG_EVERY_S
        self._full = False
        self._full_seconds = 0.0
        self._spilling_since: float | None = None

        self._threads: list[threading.Thread] = [
            threading.Thread(target=self._send_loop, name=f"influx-sender-{i}", daemon=True)
            for i in range(self.max_in_flight)
        ]
        self._drainer: threading.Thread | None = None
        if spill is not None:
            if len(spill):
                log.warning(
                    "spill buffer %s holds %d points from a previous run; draining them first",
                    spill.path,
                    spill.points,
                )
                self._spilling_since = time.monotonic()
            self._drainer = threading.Thread(
                target=self._drain_loop, name="influx-spill-drainer", daemon=True
            )
            self._threads.append(self._drainer)
        for thread in self._threads:
            thread.start()

    # The caller's side.

    @property
    def durable_through(self) -> int:
        """The highest sequence number such that every body up to it is durable."""
        with self._cond:
            return self._durable_locked()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (on a sender thread) each time a request has settled.

        The points sink observes its latency histograms then, when the points became
        durable, not at its next call. A listener must be quick and must not submit.
        """
        with self._cond:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling ``listener``."""
        with self._cond:
            self._listeners = tuple(x for x in self._listeners if x is not listener)

    @property
    def submitted_through(self) -> int:
        """The sequence number of the last body submitted (0: none yet)."""
        return self._submitted

    def submit(self, body: bytes, lines: int, *, precision: Precision | None = None) -> int:
        """Queue ``body`` (``lines`` newline-terminated lines); return its sequence number.

        Returns at once, without waiting on InfluxDB, unless the queue already holds
        ``max_pending_lines`` lines not yet taken by a sender: then it blocks until
        there is room (backpressure: InfluxDB is slow or the spill is full). A body is
        never split; one larger than the whole queue is taken when the queue is empty.
        Raises :class:`WriterClosedError` after :meth:`close`.
        """
        precision = precision or self.precision
        if self._on_own_thread():
            # From on_rejected: queueing behind ourselves could wait for ever.
            with self._cond:
                self._check_open()
            self._write_inline(body, lines, precision)
            with self._cond:
                self._submitted += 1
                self._settle(self._submitted, self._submitted, None)
                return self._submitted
        with self._cond:
            self._check_open()
            if lines > 0 and body:
                self._wait_for_queue_room(lines)
            self._submitted += 1
            seq = self._submitted
            if lines <= 0 or not body:
                self._settle(seq, seq, None)
                return seq
            self._pending.append(_Body(seq, body, lines, precision))
            self._pending_lines += lines
            if len(self._pending) == 1:
                self._pending_since = time.monotonic()
                self._cond.notify_all()  # an idle sender times the linger from now
            if self._pending_lines >= self._settings.batch_size:
                self._dispatch(everything=False)
            return seq

    def flush(self, timeout: float | None = None) -> int:
        """Send what is queued; block until every body submitted before this is durable.

        Returns the sequence number waited for. Raises :class:`FlushTimeoutError` when
        ``timeout`` seconds pass first (nothing is lost: the bodies stay queued or in
        flight), and the error of a body that could not be made durable (no spill and
        InfluxDB failing, or ``on_rejected`` raising) once, to the first flush that
        covers it. Must not be called from ``on_rejected``.
        """
        if self._on_own_thread():
            raise StorageError("flush() called from the writer's own thread would wait on itself")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._check_open()
            target = self._submitted
            self._dispatch(everything=True)
            self._wait_settled(target, deadline)
            return target

    def write(self, lines: Sequence[str]) -> None:
        """Store ``lines`` (nanosecond timestamps) durably; return when they are.

        The synchronous :class:`~gateway.influx.writer.PointWriter` form, for the alarm
        and dead-letter sinks and ``on_rejected``: ``submit`` in ``batch_size`` chunks,
        then wait for them. Called from ``on_rejected`` it writes inline.
        """
        if not lines:
            return
        chunks = _chunks(lines, self._settings.batch_size)
        if self._on_own_thread():
            for body, n in chunks:
                self._write_inline(body, n, "ns")
            return
        last = 0
        for body, n in chunks:
            last = self.submit(body, n, precision="ns")
        with self._cond:
            self._dispatch(everything=True)
            self._wait_settled(last, None)

    @property
    def stats(self) -> PipelineStats:
        """The counters and gauges now."""
        spill = self._spill
        with self._cond:
            durable = self._durable_locked()
            queued = self._pending_lines + self._ready_lines
        # Under _room, the spill's gauges agree with the spilled and drained counters.
        with self._room:
            spilled, drained = self._spilled, self._drained
            gauges = (spill.bytes, spill.batches, spill.points) if spill is not None else (0, 0, 0)
        return PipelineStats(
            points_written=self._inner.points_written,
            write_errors=self._inner.write_errors,
            retries=self._inner.retries + self._drain_retries,
            rejected_points=self._rejected,
            spilled_points=spilled,
            drained_points=drained,
            spill_bytes=gauges[0],
            spill_batches=gauges[1],
            spill_points=gauges[2],
            spill_full=self._full,
            spill_full_seconds=self._full_seconds,
            in_flight=self._in_flight,
            submitted_through=self._submitted,
            durable_through=durable,
            queued_lines=queued,
            submit_blocked=self._blocked,
            submit_blocked_seconds=self._blocked_seconds,
        )

    def close(self, timeout: float | None = None) -> None:
        """Flush (for at most ``timeout`` s), stop the threads, close the connections.

        ``timeout`` defaults to ``spill_after_s + timeout_s + 5``. What is not durable by
        then is logged and dropped from memory: its messages were not acknowledged, so
        the broker delivers them again. A non-empty spill stays on disk for the next run.
        """
        with self._cond:
            if self._closed:
                return
        if timeout is None:
            timeout = self._settings.spill_after_s + self._settings.timeout_s + 5.0
        try:
            self.flush(timeout)
        except StorageError as exc:
            log.error("closing the InfluxDB writer before everything was durable: %s", exc)
        with self._cond:
            self._closed = True
            self._stop.set()
            self._cond.notify_all()
        with self._room:
            self._room.notify_all()
        deadline = time.monotonic() + self._settings.timeout_s + 5.0
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            # Closing the spill under a running thread would fail its next step; the
            # data in it is durable either way.
            log.warning("InfluxDB writer threads did not stop in time; leaving the spill open")
            self._inner.close()
            return
        self._inner.close()
        if self._spill is not None:
            if len(self._spill):
                log.warning(
                    "closing with %d points in the spill %s; the next run drains them",
                    self._spill.points,
                    self._spill.path,
                )
            self._spill.close()

    # Queue and marks (called with _cond held).

    def _check_open(self) -> None:
        if self._closed:
            raise WriterClosedError("the InfluxDB writer is closed")

    def _on_own_thread(self) -> bool:
        return threading.current_thread() in self._threads

    def _durable_locked(self) -> int:
        if self._failed_at is None:
            return self._settled_through
        return min(self._settled_through, self._failed_at - 1)

    def _wait_for_queue_room(self, lines: int) -> None:
        limit = self._settings.max_pending_lines
        started = None
        try:
            while (queued := self._pending_lines + self._ready_lines) and queued + lines > limit:
                if started is None:
                    started = time.monotonic()
                    self._blocked = True
                    log.info("InfluxDB writer queue full (%d lines): submit waits", queued)
                # Whatever waits must be on its way, or room would never come.
                self._dispatch(everything=True)
                self._cond.wait(_FULL_WAIT_S)
                self._check_open()
        finally:
            if started is not None:
                self._blocked = False
                self._blocked_seconds += time.monotonic() - started

    def _dispatch(self, *, everything: bool) -> None:
        """Coalesce pending bodies into requests of about ``batch_size`` lines."""
        size = self._settings.batch_size
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
            self._ready.append(_Request(tuple(bodies), n, first.precision))
            self._ready_lines += n
            made = True
        if made:
            self._cond.notify_all()

    def _settle(self, first: int, last: int, error: BaseException | None) -> None:
        if error is not None:
            self._failures.append((last, error))
            if self._failed_at is None or first < self._failed_at:
                self._failed_at = first
        heapq.heappush(self._settled, (first, last))
        while self._settled and self._settled[0][0] == self._settled_through + 1:
            self._settled_through = heapq.heappop(self._settled)[1]
        self._cond.notify_all()

    def _wait_settled(self, target: int, deadline: float | None) -> None:
        while self._settled_through < target:
            if self._stop.is_set():
                raise WriterClosedError(
                    f"the InfluxDB writer closed with bodies up to {target} not all durable"
                )
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                durable = self._durable_locked()
                raise FlushTimeoutError(
                    f"bodies up to #{target} not durable in time: durable through"
                    f" #{durable}, {self._pending_lines + self._ready_lines} lines queued,"
                    f" {self._in_flight} requests in flight, spill full: {self._full}",
                    target=target,
                    durable_through=durable,
                )
            self._cond.wait(_FULL_WAIT_S if remaining is None else min(remaining, _FULL_WAIT_S))
        covered = [f for f in self._failures if f[0] <= target]
        if covered:
            self._failures = [f for f in self._failures if f[0] > target]
            raise covered[0][1]

    # The senders.

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                self._await_request()
                if self._stop.is_set():
                    if self._ready:
                        log.error(
                            "InfluxDB writer stopped with %d lines not sent", self._ready_lines
                        )
                    return
                request = self._ready.popleft()
                self._ready_lines -= request.lines
                self._cond.notify_all()  # room in the queue
            error: BaseException | None = None
            try:
                self._process(request)
            except BaseException as exc:  # settled with the error; flush raises it
                error = exc
                log.error("InfluxDB write of %d lines failed: %s", request.lines, exc)
            with self._cond:
                self._settle(request.first, request.last, error)
                listeners = self._listeners
            for listener in listeners:  # outside the lock: a listener may read us
                listener()

    def _await_request(self) -> None:
        """Wait (holding ``_cond``) until a request is ready or the writer stops.

        While no other sender is busy, what is pending leaves as one request once the
        oldest of it has waited ``_LINGER_S``: a light load is not held back for a full
        batch. While one is busy, bodies wait for ``batch_size`` lines or for it.
        """
        while not self._ready and not self._stop.is_set():
            timeout = None
            if self._pending and self._idle_senders + 1 == self.max_in_flight:
                timeout = self._pending_since + _LINGER_S - time.monotonic()
                if timeout <= 0:
                    self._dispatch(everything=True)
                    continue
            self._idle_senders += 1
            self._cond.wait(timeout)
            self._idle_senders -= 1

    def _process(self, request: _Request) -> None:
        if self._spill is not None and len(self._spill):
            self._to_spill(request.payload(), request.lines, request.precision)
            return
        try:
            self._post(request.payload(), request.lines, request.precision, self._retry_for)
        except BadPointsError as exc:
            try:
                rejected = self._isolate(request.split(), request.precision, self._retry_for, exc)
            except StorageError as again:
                if self._spill is None:
                    raise
                self._spill_after_failure(
                    request.payload(), request.lines, request.precision, again
                )
                return
            self._report(rejected)
        except StorageError as exc:
            if self._spill is None:
                raise
            self._spill_after_failure(request.payload(), request.lines, request.precision, exc)

    def _write_inline(self, body: bytes, lines: int, precision: Precision) -> None:
        """Write from one of our own threads (``on_rejected``): no queue, same guarantees."""
        if not lines:
            return
        if self._spill is not None and len(self._spill):
            self._to_spill(body, lines, precision, force=True)
            return
        try:
            self._post(body, lines, precision, self._retry_for)
        except BadPointsError as exc:
            self._report(self._isolate(split_lines(body), precision, self._retry_for, exc))
        except StorageError as exc:
            if self._spill is None:
                raise
            self._spill_after_failure(body, lines, precision, exc, force=True)

    def _post(self, body: bytes, lines: int, precision: Precision, retry_for: float) -> None:
        with self._slots:
            with self._counts:
                self._in_flight += 1
            try:
                self._inner.write_body(body, lines, precision=precision, retry_for=retry_for)
            finally:
                with self._counts:
                    self._in_flight -= 1

    def _isolate(
        self,
        lines: list[bytes],
        precision: Precision,
        retry_for: float,
        known: BadPointsError | None,
    ) -> list[tuple[str, str]]:
        """Bisect ``lines`` down to those InfluxDB refuses; return them with the error.

        ``known`` is the refusal of ``lines`` as a whole, when already had.
        """
        if known is None:
            try:
                self._post(b"\n".join(lines) + b"\n", len(lines), precision, retry_for)
                return []
            except BadPointsError as exc:
                known = exc
        if len(lines) <= 1:
            return [(line.decode("utf-8", "replace"), str(known)) for line in lines]
        if self._stop.is_set():
            raise StorageError("writer closed while isolating bad points") from known
        mid = len(lines) // 2
        return self._isolate(lines[:mid], precision, retry_for, None) + self._isolate(
            lines[mid:], precision, retry_for, None
        )

    def _report(self, rejected: list[tuple[str, str]]) -> None:
        if not rejected:
            return
        with self._counts:
            self._rejected += len(rejected)
        for line, error in rejected:
            log.warning("InfluxDB refused a point, dead-lettering it: %s (%s)", line[:200], error)
            if self.on_rejected is None:
                log.error("no handler for rejected points: dropped %r", line[:500])
                continue
            self.on_rejected(line, error)

    # The spill.

    def _spill_after_failure(
        self,
        body: bytes,
        lines: int,
        precision: Precision,
        exc: StorageError,
        *,
        force: bool = False,
    ) -> None:
        assert self._spill is not None
        if self._spilling_since is None:
            self._spilling_since = time.monotonic()
            log.warning(
                "InfluxDB write failed (%s); spilling to %s and draining in the background",
                exc,
                self._spill.path,
            )
        self._to_spill(body, lines, precision, force=force)

    def _to_spill(
        self, body: bytes, lines: int, precision: Precision, *, force: bool = False
    ) -> None:
        spill = self._spill
        assert spill is not None
        packed = PackedBatch.pack_body(body, lines, precision)
        # The drainer writes here only for dead letters of points it found bad; waiting
        # for room would wait on itself, so it (and on_rejected) may overshoot.
        force = force or threading.current_thread() is self._drainer
        with self._room:
            if not force:
                self._wait_for_room(spill, packed)
            spill.append(packed, force=force)
            with self._counts:
                self._spilled += lines
            self._room.notify_all()

    def _wait_for_room(self, spill: SpillBuffer, packed: PackedBatch) -> None:
        if spill.fits(packed):
            return
        started = time.monotonic()
        self._full = True
        log.warning(
            "spill buffer %s is full (%d of %d bytes): writes wait until it drains;"
            " the broker keeps the unacknowledged messages",
            spill.path,
            spill.bytes,
            spill.max_bytes,
        )
        try:
            while not spill.fits(packed):
                if self._stop.is_set():
                    raise StorageError("writer closed while waiting for room in the spill")
                self._room.wait(_FULL_WAIT_S)
        finally:
            self._full = False
            blocked = time.monotonic() - started
            self._full_seconds += blocked
        log.warning("spill buffer has room again; writes waited %.1f s", blocked)

    def _drain_loop(self) -> None:
        spill = self._spill
        assert spill is not None
        # A fresh retry state per drain: a success starts the backoff over.
        retrying = Retrying(
            retry=retry_if_exception_type(Exception) & retry_if_not_exception_type(_DrainStopped),
            wait=_drain_wait(self._settings.drain_backoff_max_s),
            sleep=self._stop.wait,  # a close ends the wait at once
            before_sleep=self._drain_failed,
            reraise=True,
        )
        while True:
            with self._room:
                while not len(spill) and not self._stop.is_set():
                    self._room.wait()
            if self._stop.is_set():
                return
            self._last_drain_log = -_LOG_EVERY_S
            try:
                sent = retrying(self._drain_attempt, spill)
            except _DrainStopped:
                return
            # Spare a server that has just come back: at most drain_rate points/s.
            self._stop.wait(sent / self._settings.drain_rate)

    def _drain_attempt(self, spill: SpillBuffer) -> int:
        if self._stop.is_set():
            raise _DrainStopped
        return self._drain_once(spill)

    def _drain_failed(self, state: RetryCallState) -> None:
        """Count a failed drain; log the first, then one line every _LOG_EVERY_S.

        An outage of an hour should not write a thousand warnings.
        """
        with self._counts:
            self._drain_retries += 1
        now = time.monotonic()
        if now - self._last_drain_log < _LOG_EVERY_S:
            return
        self._last_drain_log = now
        spill = self._spill
        assert spill is not None
        log.warning(
            "draining the spill (%d points, %d bytes waiting) failed %d times: %s",
            spill.points,
            spill.bytes,
            state.attempt_number,
            state.outcome.exception() if state.outcome else None,
        )

    def _drain_once(self, spill: SpillBuffer) -> int:
        batch = spill.peek(self._settings.batch_size)
        if batch is None:
            return 0
        precision: Precision = batch.precision  # type: ignore[assignment]
        try:
            self._post(batch.body, batch.points, precision, 0.0)
            rejected: list[tuple[str, str]] = []
        except BadPointsError as exc:
            rejected = self._isolate(split_lines(batch.body), precision, 0.0, exc)
        # Reported before removal: if reporting fails, the batch is sent again later
        # (idempotent) and its bad lines reported again, rather than lost.
        self._report(rejected)
        with self._room:
            spill.remove(batch)
            with self._counts:
                self._drained += batch.points
            self._room.notify_all()
            if not len(spill) and self._spilling_since is not None:
                log.warning(
                    "spill drained after %.1f s; writing to InfluxDB directly again",
                    time.monotonic() - self._spilling_since,
                )
                self._spilling_since = None
        return batch.points


def spill_key(settings: InfluxSettings, policy: str | None = None) -> str:
    """Name the target database and retention policy, so spills for targets never mix.

    A spilled body is drained by a writer to the policy it was meant for.

    ``policy`` None (the database's default policy) gives the key used before
    retention policies existed, so a spill left by an older version keeps its name.
    """
    import hashlib

    parts = [settings.api, settings.url, settings.database]
    parts += [settings.org or "", settings.bucket or ""]
    if policy is not None:
        parts.append(f"rp={policy}")
    return "spill-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def claim_spill(settings: InfluxSettings, policy: str | None = None) -> SpillBuffer | None:
    """Claim a spill buffer for one writer to the target and policy (None if disabled)."""
    if not settings.spill_enabled:
        return None
    return SpillBuffer.claim(
        settings.spill_dir, spill_key(settings, policy), max_bytes=settings.spill_max_bytes
    )


def make_pipelined_writer(
    settings: InfluxSettings,
    *,
    on_rejected: RejectHandler | None = None,
    precision: Precision = "u",
    policy: str | None = None,
) -> PipelinedWriter:
    """Return a pipelined writer to the configured target and ``policy``, with its own spill.

    ``policy`` is the retention policy written to (None: the database's default; see
    :class:`~gateway.influx.layout.StorageLayout`). Build one per sink partition, or one
    per process shared by the partitions: each has its own connections, threads and spill.
    """
    return PipelinedWriter(
        make_writer(settings, policy=policy),
        claim_spill(settings, policy),
        settings=settings,
        on_rejected=on_rejected,
        precision=precision,
    )
