"""A writer that survives InfluxDB outages: retry briefly, spill to disk, drain in order.

:class:`ResilientWriter` wraps a :class:`~gateway.influx.writer.V1Writer` or
:class:`~gateway.influx.writer.V2Writer` and keeps the sinks' contract: when
:meth:`ResilientWriter.write` returns, every line is stored in InfluxDB, durably in
the spill buffer (:mod:`gateway.influx.spill`), or reported as rejected bad data
through ``on_rejected``. Only then does the MQTT source acknowledge the messages.

- A write is retried (5xx, 429 with ``Retry-After``, connection errors) for
  ``spill_after_s``; what still fails goes to the spill and ``write`` returns, so the
  gateway keeps flowing during an outage.
- While the spill holds anything, new writes queue behind it: a drainer thread sends
  the oldest batches first (coalesced up to ``batch_size``), with backoff while
  InfluxDB still fails and at most ``drain_rate`` points/s once it answers; when the
  spill is empty, writes go straight to InfluxDB again. Order is kept.
- The spill is bounded by ``spill_max_bytes``. When it is full, ``write`` blocks until
  the drainer makes room: backpressure, nothing is dropped. The gateway then stops
  acknowledging and the broker keeps the messages. This is logged and exposed as
  ``spill_full`` in :class:`WriterStats`.
- A 4xx for bad data (:class:`~gateway.influx.writer.BadPointsError`) is bisected down
  to the lines InfluxDB refuses; each is handed to ``on_rejected(line, error)`` once
  and never retried. Re-sending the good half is safe: influxd 1.x stores the good
  points of a partial write, and writing the same point again overwrites it.
- At most one request is in flight per writer (influxd 1.x answers 500 "engine: error
  syncing wal" under many concurrent writes): the caller sends only while the spill is
  empty and holds the writer's lock while it does; the drainer sends only while the
  spill is non-empty, and the spill becomes empty only by the drainer's own removal,
  under that lock. Run one writer per worker and sink.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from contract.errors import StorageError
from gateway.influx.spill import PackedBatch, SpillBuffer
from gateway.influx.writer import BadPointsError, BatchWriter, make_writer
from gateway.settings import InfluxSettings

__all__ = ["RejectHandler", "ResilientWriter", "WriterStats", "make_resilient_writer", "spill_key"]

log = logging.getLogger(__name__)

RejectHandler = Callable[[str, str], None]
"""Called with a line InfluxDB refused as bad data and the server's message."""

_FULL_WAIT_S = 1.0
_LOG_EVERY_S = 30.0


@dataclass(frozen=True, slots=True)
class WriterStats:
    """A snapshot of a writer's counters (monotonic) and gauges, for metrics."""

    points_written: int
    """Lines InfluxDB accepted (live and drained)."""
    write_errors: int
    """Failed requests, each failed attempt counted."""
    retries: int
    """Attempts repeated after a failure (live retries and drain retries)."""
    rejected_points: int
    """Lines refused as bad data and handed to ``on_rejected``."""
    spilled_points: int
    """Lines ever appended to the spill."""
    drained_points: int
    """Lines sent from the spill to InfluxDB."""
    spill_bytes: int
    """Gauge: stored bytes in the spill now."""
    spill_batches: int
    """Gauge: batches in the spill now."""
    spill_points: int
    """Gauge: lines in the spill now."""
    spill_full: bool
    """Gauge: a write is blocked because the spill is at its budget."""
    spill_full_seconds: float
    """Time writes have spent blocked on a full spill."""

    @classmethod
    def total(cls, many: Iterable[WriterStats]) -> WriterStats:
        """Add up the stats of several writers (one per worker and sink) for a process."""
        items = list(many)
        return cls(
            points_written=sum(s.points_written for s in items),
            write_errors=sum(s.write_errors for s in items),
            retries=sum(s.retries for s in items),
            rejected_points=sum(s.rejected_points for s in items),
            spilled_points=sum(s.spilled_points for s in items),
            drained_points=sum(s.drained_points for s in items),
            spill_bytes=sum(s.spill_bytes for s in items),
            spill_batches=sum(s.spill_batches for s in items),
            spill_points=sum(s.spill_points for s in items),
            spill_full=any(s.spill_full for s in items),
            spill_full_seconds=sum(s.spill_full_seconds for s in items),
        )


class _Backoff:
    """Exponential backoff with full jitter, capped."""

    def __init__(self, initial: float, cap: float) -> None:
        self._initial = initial
        self._cap = cap
        self._next = initial

    def next(self) -> float:
        delay = random.uniform(self._next / 2, self._next)
        self._next = min(self._next * 2, self._cap)
        return delay

    def reset(self) -> None:
        self._next = self._initial


class ResilientWriter:
    """A :class:`~gateway.influx.writer.PointWriter` that spills during outages.

    ``spill=None`` keeps the retries and the bad-point isolation but no spill: a write
    that fails for ``retry_max_s`` raises :class:`StorageError`, as the plain writers do.
    """

    def __init__(
        self,
        inner: BatchWriter,
        spill: SpillBuffer | None,
        *,
        settings: InfluxSettings,
        on_rejected: RejectHandler | None = None,
    ) -> None:
        self._inner = inner
        self._spill = spill
        self._settings = settings
        self.on_rejected = on_rejected
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._counts_lock = threading.Lock()
        self._rejected = 0
        self._spilled = 0
        self._drained = 0
        self._drain_retries = 0
        self._full = False
        self._full_seconds = 0.0
        self._spilling_since: float | None = None
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
            self._drainer.start()

    @property
    def stats(self) -> WriterStats:
        """The counters and gauges now."""
        spill = self._spill
        return WriterStats(
            points_written=self._inner.points_written,
            write_errors=self._inner.write_errors,
            retries=self._inner.retries + self._drain_retries,
            rejected_points=self._rejected,
            spilled_points=self._spilled,
            drained_points=self._drained,
            spill_bytes=spill.bytes if spill is not None else 0,
            spill_batches=spill.batches if spill is not None else 0,
            spill_points=spill.points if spill is not None else 0,
            spill_full=self._full,
            spill_full_seconds=self._full_seconds,
        )

    def write(self, lines: Sequence[str]) -> None:
        """Store ``lines`` in InfluxDB or durably in the spill; block while the spill is full.

        Lines refused as bad data go to ``on_rejected`` before this returns; an error
        raised by ``on_rejected`` propagates (the messages are then not acknowledged,
        and come again).
        """
        if not lines:
            return
        size = self._settings.batch_size
        retry_for = (
            self._settings.spill_after_s if self._spill is not None else self._settings.retry_max_s
        )
        rejected: list[tuple[str, str]] = []
        with self._cond:
            for start in range(0, len(lines), size):
                if self._spill is not None and len(self._spill):
                    self._spill_locked(lines[start:])  # behind what is already spilled
                    break
                try:
                    rejected.extend(self._isolate(lines[start : start + size], retry_for))
                except StorageError as exc:
                    if self._spill is None:
                        raise
                    self._spilling_since = time.monotonic()
                    log.warning(
                        "InfluxDB write failed (%s); spilling to %s and draining in the"
                        " background, in order",
                        exc,
                        self._spill.path,
                    )
                    self._spill_locked(lines[start:])
                    break
        self._report(rejected)

    def _isolate(self, batch: Sequence[str], retry_for: float) -> list[tuple[str, str]]:
        """Write ``batch``; bisect a 4xx down to the refused lines, which are returned."""
        try:
            self._inner.write_batch(batch, retry_for=retry_for)
        except BadPointsError as exc:
            if len(batch) == 1:
                return [(batch[0], str(exc))]
            if self._stop.is_set():
                raise StorageError("writer closed while isolating bad points") from exc
            mid = len(batch) // 2
            return self._isolate(batch[:mid], retry_for) + self._isolate(batch[mid:], retry_for)
        return []

    def _spill_locked(self, lines: Sequence[str]) -> None:
        assert self._spill is not None
        size = self._settings.batch_size
        draining_thread = threading.current_thread() is self._drainer
        for start in range(0, len(lines), size):
            packed = PackedBatch.pack(lines[start : start + size])
            # The drainer itself writes here only to store dead letters of points it
            # found bad; waiting for room would wait on itself, so it may overshoot.
            if not draining_thread:
                self._wait_for_room(packed)
            self._spill.append(packed, force=draining_thread)
            with self._counts_lock:
                self._spilled += packed.points
            self._cond.notify_all()

    def _wait_for_room(self, packed: PackedBatch) -> None:
        assert self._spill is not None
        if self._spill.fits(packed):
            return
        started = time.monotonic()
        self._full = True
        log.warning(
            "spill buffer %s is full (%d of %d bytes): blocking writes until it drains;"
            " the broker keeps the unacknowledged messages",
            self._spill.path,
            self._spill.bytes,
            self._spill.max_bytes,
        )
        try:
            while not self._spill.fits(packed):
                if self._stop.is_set():
                    raise StorageError("writer closed while waiting for room in the spill")
                self._cond.wait(_FULL_WAIT_S)
        finally:
            self._full = False
            blocked = time.monotonic() - started
            self._full_seconds += blocked
        log.warning("spill buffer has room again; writes were blocked for %.1f s", blocked)

    def _report(self, rejected: list[tuple[str, str]]) -> None:
        if not rejected:
            return
        with self._counts_lock:
            self._rejected += len(rejected)
        for line, error in rejected:
            log.warning("InfluxDB refused a point, dead-lettering it: %s (%s)", line[:200], error)
            if self.on_rejected is None:
                log.error("no handler for rejected points: dropped %r", line[:500])
                continue
            self.on_rejected(line, error)

    def _drain_loop(self) -> None:
        assert self._spill is not None
        spill = self._spill
        backoff = _Backoff(0.1, self._settings.drain_backoff_max_s)
        failures, last_logged = 0, -_LOG_EVERY_S
        while True:
            with self._cond:
                while not len(spill) and not self._stop.is_set():
                    self._cond.wait()
            if self._stop.is_set():
                return
            try:
                sent = self._drain_once(spill)
            except Exception as exc:  # the thread must survive whatever happens
                self._drain_retries += 1
                delay = backoff.next()
                if isinstance(exc, StorageError) and exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                # The first failure, then one line every _LOG_EVERY_S: an outage of an
                # hour should not write a thousand warnings.
                now = time.monotonic()
                if now - last_logged >= _LOG_EVERY_S:
                    last_logged = now
                    log.warning(
                        "draining the spill (%d points, %d bytes waiting) failed %d times: %s",
                        spill.points,
                        spill.bytes,
                        failures + 1,
                        exc,
                    )
                failures += 1
                self._stop.wait(delay)
                continue
            failures, last_logged = 0, -_LOG_EVERY_S
            backoff.reset()
            # Spare a server that has just come back: at most drain_rate points/s.
            self._stop.wait(sent / self._settings.drain_rate)

    def _drain_once(self, spill: SpillBuffer) -> int:
        batch = spill.peek(self._settings.batch_size)
        if batch is None:
            return 0
        rejected = self._isolate(batch.lines, 0.0)
        # Reported before removal: if reporting fails, the batch is sent again later
        # (idempotent) and its bad lines reported again, rather than lost.
        self._report(rejected)
        with self._cond:
            spill.remove(batch)
            with self._counts_lock:
                self._drained += len(batch.lines)
            self._cond.notify_all()
            if not len(spill) and self._spilling_since is not None:
                log.warning(
                    "spill drained after %.1f s; writing to InfluxDB directly again",
                    time.monotonic() - self._spilling_since,
                )
                self._spilling_since = None
        return len(batch.lines)

    def close(self) -> None:
        """Stop the drainer and close the connections; a non-empty spill stays on disk."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._drainer is not None:
            self._drainer.join(self._settings.timeout_s + 5)
            if self._drainer.is_alive():
                # Closing the spill under a running drainer could corrupt nothing (SQLite)
                # but would fail its next step; the data is durable either way.
                log.warning("the spill drainer did not stop in time; leaving the spill open")
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


def spill_key(settings: InfluxSettings) -> str:
    """Name the target database, so that spills for different targets never mix."""
    target = "|".join(
        [settings.api, settings.url, settings.database, settings.org or "", settings.bucket or ""]
    )
    return "spill-" + hashlib.sha256(target.encode()).hexdigest()[:16]


def make_resilient_writer(
    settings: InfluxSettings, *, on_rejected: RejectHandler | None = None
) -> ResilientWriter:
    """Return the configured writer wrapped with retries, spill and bad-point isolation."""
    spill = None
    if settings.spill_enabled:
        spill = SpillBuffer.claim(
            settings.spill_dir, spill_key(settings), max_bytes=settings.spill_max_bytes
        )
    return ResilientWriter(make_writer(settings), spill, settings=settings, on_rejected=on_rejected)
