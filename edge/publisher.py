"""Drain the outbox to the broker: oldest first, rate-limited, deleted on PUBACK.

The publisher runs in its own thread so that a slow sensor never delays sending,
and a slow network never delays sampling. It keeps at most ``max_inflight``
unacknowledged events and sends at most ``max_rate`` events per second (a token
bucket), so the backlog after an outage drains at a known pace while new events
keep being stored behind it. Status messages (birth, heartbeat) jump the queue:
they are small, retained, and say the device is alive. A heartbeat not yet sent is
replaced by the next status; any other status (``config_rejected``, ``sensor_fault``
...) is an answer someone may be waiting for, so each is sent, in order (at most
:data:`MAX_PENDING_STATUS` per topic while the link is down).

Unacknowledged events stay in the outbox. Within one process, paho re-sends them
after a reconnect; after a restart, the new publisher starts from the oldest row.

An event the broker refuses (MQTT 5 PUBACK reason code 0x80 or more: its ACL does not
let this device publish there) is not deleted either: it is counted in
``refused_total``, logged by the link with its topic, and stays in the outbox, so it is
sent again after the next start, once the broker's ACL or the agent's identity is
fixed. It is not re-sent in this process (that would loop), and like any event it
counts against the outbox's budget.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from contract.errors import SensorGateError
from edge.clock import Clock, SystemClock
from edge.outbox import Outbox
from edge.transport import Ticket, Transport

__all__ = ["MAX_PENDING_STATUS", "Publisher", "PublisherStats", "TokenBucket"]

log = logging.getLogger(__name__)

MAX_PENDING_STATUS = 64
"""Status messages kept per topic while they cannot be sent (the oldest go first)."""


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; rate 0 means unlimited."""

    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        self.rate, self.burst, self.clock = rate, max(1.0, burst), clock
        self._tokens = self.burst
        self._at = clock.monotonic()

    def take(self, want: int) -> int:
        """Take up to ``want`` whole tokens; return how many were granted."""
        if self.rate <= 0:
            return want
        now = self.clock.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        granted = min(want, int(self._tokens))
        self._tokens -= granted
        return granted

    def wait_time(self) -> float:
        """Seconds until one token is available."""
        if self.rate <= 0 or self._tokens >= 1:
            return 0.0
        return (1 - self._tokens) / self.rate


@dataclass(frozen=True, slots=True)
class PublisherStats:
    """Counters of the publisher."""

    sent: int
    acked: int
    inflight: int
    status_sent: int
    refused: int = 0
    """Events the broker refused (kept in the outbox)."""


class Publisher:
    """Sends outbox events and status messages over a :class:`Transport`."""

    def __init__(
        self,
        transport: Transport,
        outbox: Outbox,
        *,
        max_rate: float = 50.0,
        max_inflight: int = 50,
        clock: Clock | None = None,
        birth: Callable[[], tuple[str, bytes]] | None = None,
    ) -> None:
        self.transport = transport
        self.outbox = outbox
        self.clock = clock or SystemClock()
        self.max_inflight = max_inflight
        self.bucket = TokenBucket(max_rate, max(1.0, max_rate / 10), self.clock)
        self._birth = birth
        self._birth_due = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._status_lock = threading.Lock()
        # Per topic, in order: (payload, replaceable by the next status).
        self._status: dict[str, list[tuple[bytes, bool]]] = {}
        self._inflight: dict[int, Ticket] = {}
        self._cursor = 0
        self._sent = self._acked = self._status_sent = self._refused = 0
        self._thread: threading.Thread | None = None

    # -- called from other threads -----------------------------------------------------
    def wake(self, *_args: object) -> None:
        """Look at the outbox now (new event stored, PUBACK arrived, link up)."""
        self._wake.set()

    def connected(self) -> None:
        """Note a (re)connection: send the birth message first, then carry on."""
        self._birth_due.set()
        self._wake.set()

    def send_status(self, topic: str, payload: bytes, *, replaceable: bool = False) -> None:
        """Publish a retained status message as soon as the link is up.

        ``replaceable`` (heartbeats): a later status for the topic replaces this one if
        it has not gone out yet. Others are each sent, in order: a heartbeat due just
        after a ``config_rejected`` must not swallow the rejection.
        """
        with self._status_lock:
            pending = [p for p in self._status.get(topic, []) if not p[1]]
            pending.append((payload, replaceable))
            self._status[topic] = pending[-MAX_PENDING_STATUS:]
        self._wake.set()

    def set_rate(self, max_rate: float) -> None:
        """Change the drain rate."""
        self.bucket = TokenBucket(max_rate, max(1.0, max_rate / 10), self.clock)

    # -- the thread --------------------------------------------------------------------
    def start(self) -> None:
        """Start the publishing thread."""
        self._thread = threading.Thread(target=self._run, name="sg-publisher", daemon=True)
        self._thread.start()

    def stop(self, *, drain_s: float = 2.0) -> None:
        """Give the outbox up to ``drain_s`` to empty (while connected), then stop the thread.

        Whatever is left stays in the outbox for the next start.
        """
        deadline = self.clock.monotonic() + drain_s
        while (
            (self._inflight or self.outbox.depth)
            and self.clock.monotonic() < deadline
            and self.transport.connected
            and self._thread is not None
        ):
            self._wake.set()
            self._stop.wait(0.02)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            timeout = 1.0
            try:
                self.step()
                if self._inflight:
                    timeout = 0.05  # a fallback: PUBACKs normally wake us
                if self.bucket.wait_time() > 0:
                    timeout = min(timeout, self.bucket.wait_time())
            except SensorGateError as exc:
                log.error("publisher: %s", exc)
            except Exception:  # the publisher must outlive any one bad iteration
                log.exception("publisher step failed")
            self._wake.wait(timeout)
            self._wake.clear()

    def step(self) -> None:
        """One round: collect PUBACKs, send status, then fill the in-flight window."""
        self._reap()
        if not self.transport.connected:
            return
        if self._birth_due.is_set() and self._birth is not None:
            self._birth_due.clear()
            topic, payload = self._birth()
            self.transport.publish(topic, payload, qos=1, retain=True)
            self._status_sent += 1
        with self._status_lock:
            status, self._status = self._status, {}
        for topic, pending in status.items():
            for payload, _replaceable in pending:
                self.transport.publish(topic, payload, qos=1, retain=True)
                self._status_sent += 1
        room = self.max_inflight - len(self._inflight)
        if room <= 0:
            return
        items = self.outbox.peek(after_id=self._cursor, limit=room)
        if not items:
            return
        granted = self.bucket.take(len(items))
        for item in items[:granted]:
            self._inflight[item.id] = self.transport.publish(item.topic, item.payload, qos=1)
            self._cursor = item.id
            self._sent += 1

    def _reap(self) -> None:
        done = [row_id for row_id, t in self._inflight.items() if t.is_acknowledged()]
        if not done:
            return
        stored = [row_id for row_id in done if not self._inflight[row_id].refused]
        if stored:
            self.outbox.ack(stored)
            self._acked += len(stored)
        self._refused += len(done) - len(stored)
        for row_id in done:
            del self._inflight[row_id]

    def stats(self) -> PublisherStats:
        """Counters for the status."""
        return PublisherStats(
            self._sent, self._acked, len(self._inflight), self._status_sent, self._refused
        )
