"""How simulators publish: the edge's :class:`~edge.mqtt.MqttLink`, pooled, with counts.

:class:`Publisher` is the narrow seam; :class:`LinkPool` publishes through one or more
edge MQTT links (shared connections, or one connection per device, so each device has
its own client id) and counts the broker's acknowledgements; :class:`MemoryPublisher`
is the in-memory fake for tests.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from contract.errors import BrokerError
from edge.mqtt import Backoff, MqttLink, MqttSettings
from simulators.timebase import LagStats

log = logging.getLogger(__name__)

__all__ = ["LinkPool", "MemoryPublisher", "MultiplexedLinks", "PublishedMessage", "Publisher"]


class Publisher(Protocol):
    """Publishes payloads; ``key`` picks the connection (a device index)."""

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, key: int = 0
    ) -> Any:
        """Queue one message."""

    @property
    def published(self) -> int:
        """Messages handed over so far."""

    @property
    def acknowledged(self) -> int:
        """Messages the broker acknowledged (PUBACK for QoS 1; sent, for QoS 0)."""

    def wait_acknowledged(self, timeout: float) -> bool:
        """Wait until every published message is acknowledged; return whether it was."""


@dataclass(frozen=True, slots=True)
class PublishedMessage:
    """A message kept by :class:`MemoryPublisher`."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    key: int


class MemoryPublisher:
    """Keeps messages in memory and acknowledges them at once."""

    def __init__(self) -> None:
        self.messages: list[PublishedMessage] = []
        self._lock = threading.Lock()

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, key: int = 0
    ) -> None:
        """Keep one message."""
        with self._lock:
            self.messages.append(PublishedMessage(topic, payload, qos, retain, key))

    @property
    def published(self) -> int:
        """Messages kept."""
        return len(self.messages)

    @property
    def acknowledged(self) -> int:
        """Everything kept counts as acknowledged."""
        return len(self.messages)

    def wait_acknowledged(self, timeout: float) -> bool:
        """Return True: everything kept is acknowledged."""
        return True


class LinkPool:
    """``size`` edge MQTT links; message ``key`` goes over link ``key % size``.

    ``client_ids`` names each link (for one connection per device, the device's own
    identity); by default links are ``{client_prefix}-{i}``.

    At most ``max_in_flight`` messages per link wait for their acknowledgement:
    MQTT numbers in-flight messages with 16-bit ids, so past 65,535 unacknowledged
    messages paho refuses to publish ("message queue full"). Above the window
    :meth:`publish` blocks until the broker catches up (backpressure), and raises
    :class:`BrokerError` if it does not within ``stall_timeout_s``.

    With ``track_latency`` the time from :meth:`publish` to the broker's PUBACK is
    recorded per link (:attr:`latency`), for the benchmarks.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        size: int = 1,
        client_ids: Sequence[str] | None = None,
        client_prefix: str = "sg-sim",
        max_in_flight: int = 50_000,
        stall_timeout_s: float = 60.0,
        track_latency: bool = False,
    ) -> None:
        if not 0 < max_in_flight < 65_536:
            raise ValueError(f"max_in_flight must be in 1..65535; got {max_in_flight}")
        self._max_in_flight = max_in_flight
        self._stall_timeout_s = stall_timeout_s
        self.stalls = 0
        """How many times publishing waited for the broker to catch up."""
        if client_ids is None:
            client_ids = [f"{client_prefix}-{i}" for i in range(size)]
        if not client_ids:
            raise ValueError("a link pool needs at least one link")
        # Simulated devices keep no session: a restarted simulator is a fresh device run.
        self._links = [
            MqttLink(settings.model_copy(update={"client_id": cid, "clean_session": True}))
            for cid in client_ids
        ]
        self._published = [0] * len(self._links)
        self._acked = [0] * len(self._links)
        self.reached = 0
        """The most links connected at once while :meth:`start` waited."""
        self._latency: list[LagStats] | None = None
        self._sent_at: list[dict[int, float]] = []
        if track_latency:
            self._latency = [LagStats(tolerance_s=0.25) for _ in self._links]
            self._sent_at = [{} for _ in self._links]
        for i, link in enumerate(self._links):
            link.client.on_publish = self._ack_counter(i)

    def _ack_counter(self, index: int) -> Any:
        acked = self._acked
        latency = self._latency[index] if self._latency is not None else None
        sent_at = self._sent_at[index] if self._latency is not None else {}

        # Runs on that link's paho thread only, so the plain increment is not shared.
        def on_publish(_c: object, _u: object, mid: int, _rc: object, _p: object) -> None:
            acked[index] += 1
            if latency is not None:
                t = sent_at.pop(mid, None)
                if t is not None:
                    latency.add(time.monotonic() - t)

        return on_publish

    @property
    def size(self) -> int:
        """The number of links."""
        return len(self._links)

    def start(self, *, timeout: float = 30.0) -> None:
        """Connect every link; raise :class:`BrokerError` if they are not all up in time."""
        for link in self._links:
            link.start(wait_s=None)
        deadline = time.monotonic() + timeout
        for link in self._links:
            if not link.wait_connected(max(0.0, deadline - time.monotonic())):
                self.reached = self.connected
                self.stop()
                raise BrokerError(
                    f"not every MQTT link to {link.settings.url} connected within {timeout:.0f} s"
                    f" ({self.reached} of {self.size}); is the broker up, and does it accept"
                    " that many connections?"
                )
        self.reached = self.connected

    @property
    def connected(self) -> int:
        """How many links are connected right now."""
        return sum(1 for link in self._links if link.connected)

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, key: int = 0
    ) -> Any:
        """Publish over link ``key % size``; return the edge's publish ticket."""
        index = key % len(self._links)
        if self._published[index] - self._acked[index] >= self._max_in_flight:
            self._wait_for_window(index)
        if self._latency is None:
            ticket = self._links[index].publish(topic, payload, qos=qos, retain=retain)
        else:
            t = time.monotonic()
            ticket = self._links[index].publish(topic, payload, qos=qos, retain=retain)
            if ticket.is_acknowledged():  # the PUBACK beat us to it (or QoS 0)
                self._latency[index].add(time.monotonic() - t)
            else:
                self._sent_at[index][ticket.mid] = t
        self._published[index] += 1
        return ticket

    @property
    def latency(self) -> LagStats | None:
        """Publish-to-PUBACK latency over every link (with ``track_latency``)."""
        if self._latency is None:
            return None
        return LagStats.merged(self._latency)

    def _wait_for_window(self, index: int) -> None:
        self.stalls += 1
        low = self._max_in_flight * 9 // 10
        deadline = time.monotonic() + self._stall_timeout_s
        while self._published[index] - self._acked[index] > low:
            if time.monotonic() >= deadline:
                link = self._links[index]
                raise BrokerError(
                    f"{link.settings.url} acknowledged nothing for {self._stall_timeout_s:.0f} s"
                    f" with {self._published[index] - self._acked[index]:,} messages in flight"
                    f" on {link.settings.client_id!r}"
                )
            time.sleep(0.001)

    @property
    def published(self) -> int:
        """Messages handed to the links."""
        return sum(self._published)

    @property
    def acknowledged(self) -> int:
        """Messages acknowledged by the broker (QoS 0: written to the socket)."""
        return sum(self._acked)

    def wait_acknowledged(self, timeout: float) -> bool:
        """Wait until the acknowledgements catch up with what was published."""
        deadline = time.monotonic() + timeout
        while self.acknowledged < self.published:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)  # polling counters updated by paho threads; no event to wait on
        return True

    def stop(self) -> None:
        """Disconnect every link."""
        for link in self._links:
            link.stop()

    def __enter__(self) -> LinkPool:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class MultiplexedLinks(LinkPool):
    """Many edge MQTT links driven by one selector thread instead of a thread each.

    For one connection per device: paho's own network thread per client
    (``loop_start``) costs a thread each and uses ``select()``, which cannot watch
    file descriptors above 1,024, so a few hundred clients per process is its limit.
    Here the links are the edge's :class:`~edge.mqtt.MqttLink` objects all the same
    (same client setup, same ``publish``), but their sockets are served by paho's
    external-loop API (``loop_read``/``loop_write``/``loop_misc``) from one thread
    with an epoll selector. A lost connection is re-established with the edge link's
    capped, jittered exponential backoff (:class:`~edge.mqtt.Backoff`, from the same
    ``reconnect_*`` settings).
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_ids: Sequence[str],
        max_in_flight: int = 50_000,
        stall_timeout_s: float = 60.0,
        track_latency: bool = False,
        bind_addresses: Sequence[str] = (),
    ) -> None:
        self._bind_addresses = tuple(bind_addresses)
        super().__init__(
            settings,
            client_ids=client_ids,
            max_in_flight=max_in_flight,
            stall_timeout_s=stall_timeout_s,
            track_latency=track_latency,
        )
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._pending: set[int] = set()
        self._pending_lock = threading.Lock()
        self._woken = False
        self._closing = threading.Event()  # no reconnecting once set
        self._stopping = threading.Event()  # the serving thread ends once set
        self._thread: threading.Thread | None = None
        self._retry_at: dict[int, float] = {}
        self._retry_backoff: dict[int, Backoff] = {}
        for i, link in enumerate(self._links):
            client = link.client
            client.on_socket_open = self._opened(i)
            client.on_socket_close = self._closed
            client.on_socket_register_write = self._write_wanted(i)
            client.on_socket_unregister_write = None

    # paho calls these from whichever thread opened, closed or queued on the socket.
    def _opened(self, index: int) -> Any:
        def on_open(_c: object, _u: object, sock: Any) -> None:
            try:
                self._selector.register(sock, selectors.EVENT_READ, index)
            except KeyError:  # the number of a socket closed behind our back, reused
                self._selector.unregister(sock.fileno())
                self._selector.register(sock, selectors.EVENT_READ, index)

        return on_open

    def _closed(self, _c: object, _u: object, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)

    def _write_wanted(self, index: int) -> Any:
        def on_register_write(_c: object, _u: object, _sock: Any) -> None:
            with self._pending_lock:
                self._pending.add(index)
                wake = not self._woken
                self._woken = True
            if wake:  # one wake-up byte per batch of writes, not per message
                with contextlib.suppress(BlockingIOError):
                    self._wake_w.send(b"\0")

        return on_register_write

    def start(self, *, timeout: float = 30.0) -> None:
        """Open every connection, then serve them all from one thread."""
        settings = self._links[0].settings
        self._thread = threading.Thread(target=self._serve, name="sim-links", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        binds = self._bind_addresses
        for opened, link in enumerate(self._links):
            try:
                link.client.connect(
                    settings.host,
                    settings.port,
                    keepalive=settings.keepalive_s,
                    bind_address=binds[opened % len(binds)] if binds else "",
                )
            except (OSError, ValueError) as exc:
                self.reached = self.connected
                self.stop()
                raise BrokerError(
                    f"cannot connect to {settings.url} (after opening {opened:,} of"
                    f" {self.size:,} connections, {self.reached:,} of them acknowledged):"
                    f" {exc}"
                ) from exc
        for link in self._links:
            if not link.wait_connected(max(0.0, deadline - time.monotonic())):
                self.reached = self.connected
                self.stop()
                raise BrokerError(
                    f"not every MQTT link to {settings.url} connected within {timeout:.0f} s"
                    f" ({self.reached} of {self.size})"
                )
        self.reached = self.connected

    def _serve(self) -> None:
        clients = [link.client for link in self._links]
        selector = self._selector
        next_misc = time.monotonic() + 1.0
        while not self._stopping.is_set():
            for key, mask in selector.select(timeout=0.2):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        while self._wake_r.recv(4096):
                            pass
                    continue
                client = clients[key.data]
                try:
                    if mask & selectors.EVENT_READ:
                        client.loop_read()
                    if mask & selectors.EVENT_WRITE:
                        self._write(key.data, client)
                except Exception:  # one broken link must not stop the thread serving all
                    log.exception("MQTT link %s failed; it will reconnect", key.data)
                    with contextlib.suppress(Exception):
                        client.socket().close()
            with self._pending_lock:
                pending, self._pending = self._pending, set()
                self._woken = False
            for index in pending:
                self._write(index, clients[index])
            now = time.monotonic()
            if now >= next_misc:
                next_misc = now + 1.0
                self._misc(clients, now)

    def _write(self, index: int, client: Any) -> None:
        client.loop_write()
        sock = client.socket()
        if sock is None:
            return
        # A full socket buffer leaves data behind: let the selector say when to go on.
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.want_write() else 0)
        with contextlib.suppress(KeyError, ValueError):
            if selector_events(self._selector, sock) != events:
                self._selector.modify(sock, events, index)

    def _misc(self, clients: list[Any], now: float) -> None:
        settings = self._links[0].settings
        for index, client in enumerate(clients):
            if client.socket() is None:
                if self._closing.is_set():
                    continue
                if now >= self._retry_at.get(index, 0.0):
                    backoff = self._retry_backoff.get(index)
                    if backoff is None:  # the same waits as the edge link's own reconnects
                        backoff = self._retry_backoff[index] = Backoff(
                            settings.reconnect_min_s,
                            max(settings.reconnect_min_s, settings.reconnect_max_s),
                            settings.reconnect_jitter,
                        )
                    self._retry_at[index] = now + backoff.next()
                    with contextlib.suppress(OSError, ValueError):
                        client.reconnect()
                continue
            self._retry_backoff.pop(index, None)
            client.loop_misc()  # keepalive pings
            # A message queued just as the previous write finished can miss its
            # wake-up (paho flips its "registered" flag without a lock): sweep for it.
            if client.want_write():
                self._write(index, client)

    def stop(self) -> None:
        """Disconnect every link cleanly and stop the serving thread."""
        self._closing.set()
        for link in self._links:
            with contextlib.suppress(Exception):
                link.client.disconnect()
        deadline = time.monotonic() + 5.0
        while any(link.client.socket() is not None for link in self._links):
            if time.monotonic() >= deadline or self._thread is None:
                break
            time.sleep(0.01)  # the serving thread writes the DISCONNECTs and closes
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for link in self._links:
            sock = link.client.socket()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        with contextlib.suppress(OSError):
            self._wake_r.close()
            self._wake_w.close()


def selector_events(selector: selectors.BaseSelector, sock: Any) -> int:
    """Return the events ``sock`` is registered for (0 if it is not)."""
    try:
        return selector.get_key(sock).events
    except (KeyError, ValueError):
        return 0
