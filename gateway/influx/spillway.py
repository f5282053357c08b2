"""The pipelined writer's way around an outage: into the on-disk spill and back out.

:class:`Spillway` appends request bodies to a :class:`~gateway.influx.spill.SpillBuffer`
(committed and fsynced: durable) when InfluxDB keeps failing, with backpressure once
the spill is at its budget, and runs the drainer that sends the oldest spilled batches
back to InfluxDB (coalesced up to ``batch_size``), backing off while it still fails
and at most ``drain_rate`` points/s once it answers. What it posts and how refused
points are isolated and reported are the writer's (:mod:`gateway.influx.pipeline`).
:func:`spill_key` and :func:`claim_spill` name and open one writer's spill.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
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
from gateway.influx.writer import PRECISIONS, BadPointsError, Precision
from gateway.settings import InfluxSettings

__all__ = ["SpillGauges", "Spillway", "claim_spill", "drain_wait", "spill_key"]

log = logging.getLogger(__name__)

_FULL_WAIT_S = 1.0
_LOG_EVERY_S = 30.0

Post = Callable[[bytes, int, Precision, float], None]
"""Post a body of ``lines`` lines in a precision, retrying transient errors for a time."""
Isolate = Callable[[list[bytes], Precision, float, BadPointsError], list[tuple[str, str]]]
"""Bisect lines InfluxDB refused down to the bad ones: (line, error) pairs."""
Report = Callable[[list[tuple[str, str]]], None]
"""Hand refused lines to the rejection handler."""


def spill_key(settings: InfluxSettings, policy: str | None = None) -> str:
    """Name the target database and retention policy, so spills for targets never mix.

    A spilled body is drained by a writer to the policy it was meant for.

    ``policy`` None (the database's default policy) gives the key used before
    retention policies existed, so a spill left by an older version keeps its name.
    """
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


def drain_wait(cap: float) -> Callable[[RetryCallState], float]:
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


@dataclass(frozen=True, slots=True)
class SpillGauges:
    """A spillway's counters and its spill's gauges (all zero without a spill)."""

    spilled: int = 0
    drained: int = 0
    drain_retries: int = 0
    bytes: int = 0
    batches: int = 0
    points: int = 0
    full: bool = False
    full_seconds: float = 0.0


class _DrainStopped(Exception):
    """The writer is closing: end the drain instead of attempting again."""


class Spillway:
    """Spill appends with backpressure, and the drainer (see the module docstring).

    ``stop`` is the writer's: set, it ends the drain and any wait for room.
    """

    def __init__(
        self,
        spill: SpillBuffer,
        settings: InfluxSettings,
        stop: threading.Event,
        *,
        post: Post,
        isolate: Isolate,
        report: Report,
    ) -> None:
        self.spill = spill
        self._settings = settings
        self._stop = stop
        self._post, self._isolate, self._report = post, isolate, report
        self.room = threading.Condition()
        """Guards appends and removals; wakes the drainer and writers waiting for room."""
        self._counts = threading.Lock()
        self.spilled = 0
        self.drained = 0
        self.drain_retries = 0
        self.full = False
        self.full_seconds = 0.0
        self._last_drain_log = -_LOG_EVERY_S
        self._spilling_since: float | None = None
        if len(spill):
            log.warning(
                "spill buffer %s holds %d points from a previous run; draining them first",
                spill.path,
                spill.points,
            )
            self._spilling_since = time.monotonic()
        self.drainer = threading.Thread(
            target=self._drain_loop, name="influx-spill-drainer", daemon=True
        )

    def holding(self) -> bool:
        """Whether the spill holds anything (then new requests go behind it)."""
        return bool(len(self.spill))

    def gauges(self) -> SpillGauges:
        """Return the counters and the spill's gauges now."""
        spill = self.spill
        # Under the room lock, the gauges agree with the counters.
        with self.room:
            return SpillGauges(
                self.spilled,
                self.drained,
                self.drain_retries,
                spill.bytes,
                spill.batches,
                spill.points,
                self.full,
                self.full_seconds,
            )

    def close(self) -> None:
        """Close the spill (the drainer has stopped); what it holds waits for the next run."""
        spill = self.spill
        if len(spill):
            log.warning(
                "closing with %d points in the spill %s; the next run drains them",
                spill.points,
                spill.path,
            )
        spill.close()

    def wake(self) -> None:
        """Wake every wait (the writer is closing)."""
        with self.room:
            self.room.notify_all()

    def after_failure(
        self, body: bytes, lines: int, precision: Precision, exc: StorageError, *, force: bool
    ) -> None:
        """Spill a body InfluxDB kept failing; say so once per outage."""
        if self._spilling_since is None:
            self._spilling_since = time.monotonic()
            log.warning(
                "InfluxDB write failed (%s); spilling to %s and draining in the background",
                exc,
                self.spill.path,
            )
        self.put(body, lines, precision, force=force)

    def put(self, body: bytes, lines: int, precision: Precision, *, force: bool = False) -> None:
        """Append a body to the spill, waiting for room unless ``force``."""
        spill = self.spill
        packed = PackedBatch.pack_body(body, lines, precision)
        # The drainer writes here only for dead letters of points it found bad; waiting
        # for room would wait on itself, so it (and on_rejected) may overshoot.
        force = force or threading.current_thread() is self.drainer
        with self.room:
            if not force:
                self._wait_for_room(packed)
            spill.append(packed, force=force)
            with self._counts:
                self.spilled += lines
            self.room.notify_all()

    def _wait_for_room(self, packed: PackedBatch) -> None:
        spill = self.spill
        if spill.fits(packed):
            return
        started = time.monotonic()
        self.full = True
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
                self.room.wait(_FULL_WAIT_S)
        finally:
            self.full = False
            blocked = time.monotonic() - started
            self.full_seconds += blocked
        log.warning("spill buffer has room again; writes waited %.1f s", blocked)

    def _interruptible_sleep(self, seconds: float) -> None:
        """Sleep between drain attempts; a close ends the wait at once."""
        self._stop.wait(seconds)

    def _drain_loop(self) -> None:
        spill = self.spill
        # A fresh retry state per drain: a success starts the backoff over.
        retrying = Retrying(
            retry=retry_if_exception_type(Exception) & retry_if_not_exception_type(_DrainStopped),
            wait=drain_wait(self._settings.drain_backoff_max_s),
            sleep=self._interruptible_sleep,
            before_sleep=self._drain_failed,
            reraise=True,
        )
        while True:
            with self.room:
                while not len(spill) and not self._stop.is_set():
                    self.room.wait()
            if self._stop.is_set():
                return
            self._last_drain_log = -_LOG_EVERY_S
            try:
                sent = retrying(self._drain_attempt)
            except _DrainStopped:
                return
            # Spare a server that has just come back: at most drain_rate points/s.
            self._stop.wait(sent / self._settings.drain_rate)

    def _drain_attempt(self) -> int:
        if self._stop.is_set():
            raise _DrainStopped
        return self._drain_once()

    def _drain_failed(self, state: RetryCallState) -> None:
        """Count a failed drain; log the first, then one line every _LOG_EVERY_S.

        An outage of an hour should not write a thousand warnings.
        """
        with self._counts:
            self.drain_retries += 1
        now = time.monotonic()
        if now - self._last_drain_log < _LOG_EVERY_S:
            return
        self._last_drain_log = now
        log.warning(
            "draining the spill (%d points, %d bytes waiting) failed %d times: %s",
            self.spill.points,
            self.spill.bytes,
            state.attempt_number,
            state.outcome.exception() if state.outcome else None,
        )

    def _drain_once(self) -> int:
        spill = self.spill
        batch = spill.peek(self._settings.batch_size)
        if batch is None:
            return 0
        precision = PRECISIONS[batch.precision]  # written by put(): one of them
        try:
            self._post(batch.body, batch.points, precision, 0.0)
            rejected: list[tuple[str, str]] = []
        except BadPointsError as exc:
            rejected = self._isolate(split_lines(batch.body), precision, 0.0, exc)
        # Reported before removal: if reporting fails, the batch is sent again later
        # (idempotent) and its bad lines reported again, rather than lost.
        self._report(rejected)
        with self.room:
            spill.remove(batch)
            with self._counts:
                self.drained += batch.points
            self.room.notify_all()
            if not len(spill) and self._spilling_since is not None:
                log.warning(
                    "spill drained after %.1f s; writing to InfluxDB directly again",
                    time.monotonic() - self._spilling_since,
                )
                self._spilling_since = None
        return batch.points
