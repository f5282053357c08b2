"""One edge MQTT link per device, served from one selector thread: :class:`MultiplexedLinks`.

The thread runner of ``sensorgate simulate --connections per-device`` (the asyncio
runner is :mod:`simulators.aio_fleet`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from contract.errors import BrokerError
from edge.mqtt import Backoff, MqttSettings
from simulators.links import LinkPool

log = logging.getLogger(__name__)

__all__ = ["MultiplexedLinks", "selector_events"]


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
        self._ever_connected = [False] * len(self._links)
        self.opened = 0
        """Connections opened by :meth:`start` (all of them, unless :attr:`open_error`)."""
        self.open_error: str | None = None
        """Why :meth:`start` could not open every connection (None if it could)."""
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
        """Open every connection the system allows, then serve them all from one thread.

        Opening stops at the first connection that cannot be opened (typically
        ``EMFILE``: the open-file limit): the links opened so far are kept and served,
        :attr:`open_error` says why the rest were not, and those retry with backoff as
        lost links do. Raises :class:`BrokerError` only if no link connects within
        ``timeout`` (the broker is down or refuses them all).
        """
        settings = self._links[0].settings
        self._thread = threading.Thread(target=self._serve, name="sim-links", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        self.opened = self._open_all(settings)
        for link in self._links[: self.opened]:
            if not link.wait_connected(max(0.0, deadline - time.monotonic())):
                break
        self.reached = self.connected
        self._note_connected()
        if self.reached == 0:
            self.stop()
            raise BrokerError(
                f"no MQTT link to {settings.url} connected within {timeout:.0f} s (opened"
                f" {self.opened:,} of {self.size:,}"
                + (f"; {self.open_error}" if self.open_error else "")
                + "); is the broker up, and does it accept these clients?"
            )
        if self.reached < self.size:
            log.warning(
                "%s of %s links connected to %s%s",
                f"{self.reached:,}",
                f"{self.size:,}",
                settings.url,
                f" ({self.open_error})" if self.open_error else "",
            )

    def _open_all(self, settings: MqttSettings) -> int:
        """Open connections in order until one fails; return how many were opened."""
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
                name = errno.errorcode.get(getattr(exc, "errno", None) or 0, "")
                self.open_error = (
                    f"cannot open connection {opened + 1:,} of {self.size:,}"
                    f" to {settings.url}: {name + ' ' if name else ''}{exc}"
                )
                # The rest only learn where to connect: the serving thread retries them
                # with backoff, as lost links, should descriptors free up.
                for later, rest in enumerate(self._links[opened + 1 :], start=opened + 1):
                    rest.client.connect_async(
                        settings.host,
                        settings.port,
                        keepalive=settings.keepalive_s,
                        bind_address=binds[later % len(binds)] if binds else "",
                    )
                return opened
        return self.size

    def _note_connected(self) -> None:
        for index, link in enumerate(self._links):
            if link.connected:
                self._ever_connected[index] = True

    @property
    def stranded(self) -> int:
        """Messages published on links that never connected, not acknowledged."""
        return sum(
            self._published[i] - self._acked[i]
            for i, ever in enumerate(self._ever_connected)
            if not ever
        )

    def wait_acknowledged(self, timeout: float) -> bool:
        """Wait for every acknowledgement but those of links that never connected."""
        deadline = time.monotonic() + timeout
        while self.acknowledged < self.published - self.stranded:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)  # counters updated by the serving thread; no event to wait on
        return True

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
            if not self._ever_connected[index] and self._links[index].connected:
                self._ever_connected[index] = True
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
