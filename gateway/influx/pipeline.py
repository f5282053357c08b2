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
  connection error) is retried for ``spill_after_s``, then spilled, and so is a
  401/403/404 (configuration, not data). While the spill holds anything, new requests
  go to it, behind the older ones; :mod:`gateway.influx.spillway` drains it. A full
  spill (``spill_max_bytes``) blocks the senders, then ``submit`` (backpressure;
  nothing is dropped, the broker keeps the unacknowledged messages);
- refused as bad data: a 4xx for the data (400, 413, 422) is bisected down to the
  refused lines (:mod:`gateway.influx.refused`; the one place bodies are split: a body
  larger than ``batch_size`` is one request), and each is handed to
  ``on_rejected(line, error)`` once, before the body counts as durable.

Without a spill (``spill_enabled=False``) a request still failing after ``retry_max_s``
is lost to the writer: ``durable_through`` stops before it for good, and the
``flush`` (or ``write``) covering it raises the error.

Order: requests leave in submission order, but with ``max_in_flight > 1`` they are
stored in whatever order they complete, and a request that had to be spilled is
stored after later ones. Points are independent and rewriting one is idempotent, so
this matters only for two writes of the same point (same series and timestamp) with
different values; :class:`~gateway.influx.resilient.ResilientWriter` keeps one request
in flight and therefore its order.

Threads: ``max_in_flight`` senders and, with a spill, one drainer. ``on_rejected`` runs
on one of them; it may call :meth:`~PipelinedWriter.write` on this same writer (the
gateway stores each dead letter through the writer that refused its line), which then
writes inline, synchronously, instead of queueing behind itself. It must not call
``submit`` or ``flush``.

The queue and the durability marks are :mod:`gateway.influx.submissions`, the spill's
drain :mod:`gateway.influx.spillway`, refused-line isolation :mod:`gateway.influx.refused`.
What stays here (a little over 400 lines, on purpose) is one class whose caller side and
sender threads share one lock and one set of counters; cutting it further would split
that lock's users across modules. Errors::

    StorageError
    ├── FlushTimeoutError     flush(timeout) expired before the bodies were durable
    └── WriterClosedError     submit or flush after close()
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence

from contract.errors import StorageError
from gateway.influx.lineprotocol import bodies_of
from gateway.influx.refused import isolate_refused
from gateway.influx.spill import SpillBuffer, split_lines
from gateway.influx.spillway import SpillGauges, Spillway, claim_spill
from gateway.influx.stats import PipelineStats
from gateway.influx.submissions import FlushTimeoutError, Request, Submissions, WriterClosedError
from gateway.influx.writer import BadPointsError, BatchWriter, Precision, make_writer
from gateway.settings import InfluxSettings

__all__ = [
    "FlushTimeoutError",
    "PipelinedWriter",
    "RejectHandler",
    "WriterClosedError",
    "make_pipelined_writer",
]

log = logging.getLogger(__name__)

RejectHandler = Callable[[str, str], None]
"""Called with a line InfluxDB refused as bad data and the server's message."""


class PipelinedWriter:
    """Submit bodies without waiting; ``flush`` returns when all before it are durable.

    ``inner`` posts the requests (a :class:`~gateway.influx.writer.V1Writer`,
    :class:`~gateway.influx.writer.V3Writer` or
    :class:`~gateway.influx.writer_v2.V2Writer`); ``spill`` is where outages go (None: no
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
        self._settings = settings
        self.on_rejected = on_rejected
        self.precision: Precision = precision
        self.max_in_flight = max_in_flight or settings.max_in_flight
        self._retry_for = settings.spill_after_s if spill is not None else settings.retry_max_s

        self._stop = threading.Event()
        self._q = Submissions(
            settings.batch_size,
            settings.max_pending_lines,
            self._stop,
            busy=self._busy,
            senders=self.max_in_flight,
        )
        self._listeners: tuple[Callable[[], None], ...] = ()
        self._slots = threading.BoundedSemaphore(self.max_in_flight)
        self._counts = threading.Lock()
        self._in_flight = 0
        self._rejected = 0
        self._isolate = functools.partial(isolate_refused, post=self._post, stop=self._stop)
        self._spillway: Spillway | None = None
        if spill is not None:
            self._spillway = Spillway(
                spill,
                settings,
                self._stop,
                post=self._post,
                isolate=self._isolate,
                report=self._report,
            )
        self._threads = self._start_threads()

    def _start_threads(self) -> list[threading.Thread]:
        """Start ``max_in_flight`` senders and, with a spill, its drainer."""
        threads = [
            threading.Thread(target=self._send_loop, name=f"influx-sender-{i}", daemon=True)
            for i in range(self.max_in_flight)
        ]
        if self._spillway is not None:
            threads.append(self._spillway.drainer)
        for thread in threads:
            thread.start()
        return threads

    # The caller's side.

    @property
    def durable_through(self) -> int:
        """The highest sequence number such that every body up to it is durable."""
        with self._q.cond:
            return self._q.durable()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (on a sender thread) each time a request has settled.

        The points sink observes its latency histograms then, when the points became
        durable, not at its next call. A listener must be quick and must not submit.
        """
        with self._q.cond:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling ``listener``."""
        with self._q.cond:
            self._listeners = tuple(x for x in self._listeners if x is not listener)

    @property
    def submitted_through(self) -> int:
        """The sequence number of the last body submitted (0: none yet)."""
        return self._q.submitted

    def submit(self, body: bytes, lines: int, *, precision: Precision | None = None) -> int:
        """Queue ``body`` (``lines`` newline-terminated lines); return its sequence number.

        Returns at once, without waiting on InfluxDB, unless the queue already holds
        ``max_pending_lines`` lines not yet taken by a sender: then it blocks until
        there is room (backpressure: InfluxDB is slow or the spill is full). A body is
        never split; one larger than the whole queue is taken when the queue is empty.
        Raises :class:`WriterClosedError` after :meth:`close`.
        """
        precision = precision or self.precision
        q = self._q
        if self._on_own_thread():
            # From on_rejected: queueing behind ourselves could wait for ever.
            with q.cond:
                q.check_open()
            self._write_inline(body, lines, precision)
            with q.cond:
                return q.add_settled()
        with q.cond:
            q.check_open()
            return q.add(body, lines, precision)

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
        q = self._q
        with q.cond:
            q.check_open()
            target = q.submitted
            q.dispatch(everything=True)
            q.wait_settled(target, deadline)
            return target

    def write(self, lines: Sequence[str]) -> None:
        """Store ``lines`` (nanosecond timestamps) durably; return when they are.

        The synchronous :class:`~gateway.influx.writer.PointWriter` form, for the alarm
        and dead-letter sinks and ``on_rejected``: ``submit`` in ``batch_size`` chunks,
        then wait for them. Called from ``on_rejected`` it writes inline.
        """
        if not lines:
            return
        chunks = bodies_of(lines, self._settings.batch_size)
        if self._on_own_thread():
            for body, n in chunks:
                self._write_inline(body, n, "ns")
            return
        last = 0
        for body, n in chunks:
            last = self.submit(body, n, precision="ns")
        with self._q.cond:
            self._q.dispatch(everything=True)
            self._q.wait_settled(last, None)

    @property
    def stats(self) -> PipelineStats:
        """The counters and gauges now."""
        spillway = self._spillway
        q = self._q
        with q.cond:
            durable = q.durable()
            queued = q.queued_lines
        spill = spillway.gauges() if spillway is not None else SpillGauges()
        return PipelineStats(
            points_written=self._inner.points_written,
            write_errors=self._inner.write_errors,
            retries=self._inner.retries + spill.drain_retries,
            rejected_points=self._rejected,
            spilled_points=spill.spilled,
            drained_points=spill.drained,
            spill_bytes=spill.bytes,
            spill_batches=spill.batches,
            spill_points=spill.points,
            spill_full=spill.full,
            spill_full_seconds=spill.full_seconds,
            in_flight=self._in_flight,
            submitted_through=q.submitted,
            durable_through=durable,
            queued_lines=queued,
            submit_blocked=q.blocked,
            submit_blocked_seconds=q.blocked_seconds,
        )

    def close(self, timeout: float | None = None) -> None:
        """Flush (for at most ``timeout`` s), stop the threads, close the connections.

        ``timeout`` defaults to ``spill_after_s + timeout_s + 5``. What is not durable by
        then is logged and dropped from memory: its messages were not acknowledged, so
        the broker delivers them again. A non-empty spill stays on disk for the next run.
        """
        with self._q.cond:
            if self._q.closed:
                return
        if timeout is None:
            timeout = self._settings.spill_after_s + self._settings.timeout_s + 5.0
        try:
            self.flush(timeout)
        except StorageError as exc:
            log.error("closing the InfluxDB writer before everything was durable: %s", exc)
        with self._q.cond:
            self._q.closed = True
            self._stop.set()
            self._q.cond.notify_all()
        if self._spillway is not None:
            self._spillway.wake()
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
        if self._spillway is not None:
            self._spillway.close()

    def _on_own_thread(self) -> bool:
        return threading.current_thread() in self._threads

    def _busy(self) -> str:
        """Describe what is still at work, for a flush that times out."""
        full = self._spillway is not None and self._spillway.full
        return f"{self._in_flight} requests in flight, spill full: {full}"

    # The senders.

    def _send_loop(self) -> None:
        q = self._q
        while True:
            with q.cond:
                request = q.take()
            if request is None:
                return
            error: BaseException | None = None
            try:
                self._process(request)
            except BaseException as exc:  # settled with the error; flush raises it
                error = exc
                log.error("InfluxDB write of %d lines failed: %s", request.lines, exc)
            with q.cond:
                q.settle(request.first, request.last, error)
                listeners = self._listeners
            for listener in listeners:  # outside the lock: a listener may read us
                listener()

    def _process(self, request: Request) -> None:
        spillway = self._spillway
        if spillway is not None and spillway.holding():
            spillway.put(request.payload(), request.lines, request.precision)
            return
        try:
            self._post(request.payload(), request.lines, request.precision, self._retry_for)
        except BadPointsError as exc:
            try:
                rejected = self._isolate(request.split(), request.precision, self._retry_for, exc)
            except StorageError as again:
                if spillway is None:
                    raise
                spillway.after_failure(
                    request.payload(), request.lines, request.precision, again, force=False
                )
                return
            self._report(rejected)
        except StorageError as exc:
            if spillway is None:
                raise
            spillway.after_failure(
                request.payload(), request.lines, request.precision, exc, force=False
            )

    def _write_inline(self, body: bytes, lines: int, precision: Precision) -> None:
        """Write from one of our own threads (``on_rejected``): no queue, same guarantees."""
        if not lines:
            return
        spillway = self._spillway
        if spillway is not None and spillway.holding():
            spillway.put(body, lines, precision, force=True)
            return
        try:
            self._post(body, lines, precision, self._retry_for)
        except BadPointsError as exc:
            self._report(self._isolate(split_lines(body), precision, self._retry_for, exc))
        except StorageError as exc:
            if spillway is None:
                raise
            spillway.after_failure(body, lines, precision, exc, force=True)

    def _post(self, body: bytes, lines: int, precision: Precision, retry_for: float) -> None:
        with self._slots:
            with self._counts:
                self._in_flight += 1
            try:
                self._inner.write_body(body, lines, precision=precision, retry_for=retry_for)
            finally:
                with self._counts:
                    self._in_flight -= 1

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
