"""Socket reads served from one large read, for clients that receive a lot.

paho reads a packet with several tiny ``recv`` calls (type byte, length bytes, body);
each releases and re-takes the GIL, and a receive thread beside a busy worker thread
(the gateway's Bytewax worker) stalls on every one of them. :class:`BufferedSocket`
serves those calls from one 256 KiB read. The gateway's MQTT source reads through it
(``MqttLink(..., buffered_reads=True)``): paho's receive and acknowledge are the
largest share of gateway CPU outside the flow itself (docs/benchmarks.md, profile).

paho has no public hook to wrap its socket, so :class:`BufferedClient` overrides its
private ``Client._create_socket`` (paho 2.x). It also overrides ``loop_misc`` so that a
PINGRESP late behind a backlog does not drop a link that is streaming (it reads paho's
private ``_ping_t`` and ``_last_bytes_received``). ``tests/edge/test_mqtt_paho_private.py``
fails if paho renames any of them.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

__all__ = ["BufferedClient", "BufferedSocket"]

_DRAIN_TIMEOUT_S = 5.0


class BufferedSocket:
    """A socket whose ``recv`` is served from one large read.

    ``pending()`` tells paho's loop that buffered bytes are waiting (paho checks it, as
    for TLS sockets, and then does not wait in ``select``). Everything else is the
    wrapped socket's.
    """

    READ_BYTES = 262_144

    drain_on_close = False
    """Set before a deliberate disconnect: read what the broker still sends before closing."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0
        # A TLS socket may hold decrypted bytes of its own that select() cannot see.
        self._sock_pending = getattr(sock, "pending", None)

    def recv(self, bufsize: int) -> bytes:
        """Return up to ``bufsize`` bytes, from the buffer or from one large read."""
        if self._pos >= len(self._buf):
            self._buf = self._sock.recv(self.READ_BYTES)
            self._pos = 0
            if not self._buf:
                return b""
        end = min(self._pos + bufsize, len(self._buf))
        data = self._buf[self._pos : end]
        self._pos = end
        return data

    def pending(self) -> int:
        """Bytes readable without waiting: those buffered here, and the TLS layer's."""
        waiting = len(self._buf) - self._pos
        if self._sock_pending is not None:
            waiting += self._sock_pending()
        return waiting

    def close(self) -> None:
        """Close the socket; with ``drain_on_close``, read to the broker's end first.

        Closing a TCP socket with unread bytes makes Linux answer with a reset, and the
        broker then drops what it had not read yet: the last PUBACKs of a graceful stop
        (a bounded inbox may have left megabytes unread). So after the DISCONNECT, shut
        our side and read to the broker's end of stream (bounded), then close.
        """
        if self.drain_on_close:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)
                self._sock.settimeout(_DRAIN_TIMEOUT_S)
                deadline = time.monotonic() + _DRAIN_TIMEOUT_S
                while time.monotonic() < deadline and self._sock.recv(self.READ_BYTES):
                    pass
        self._sock.close()

    def send(self, data: bytes | bytearray) -> int:
        """Send on the wrapped socket."""
        return self._sock.send(data)

    def fileno(self) -> int:
        """Return the wrapped socket's descriptor (paho selects on it)."""
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        """Set the wrapped socket (non-)blocking."""
        self._sock.setblocking(flag)

    def __getattr__(self, name: str) -> object:
        # Anything else paho may look up (getpeername...): the wrapped socket's own.
        return getattr(self._sock, name)


class BufferedClient(mqtt.Client):
    """A paho client whose TCP (or TLS) socket reads through a :class:`BufferedSocket`."""

    buffered: BufferedSocket | None = None
    """The socket of the current connection (None before the first, or on websockets)."""

    def _create_socket(self) -> SocketLike:
        # Private in paho 2.x (see the module docstring): the one place a socket is made,
        # for the first connection and every reconnection.
        sock = super()._create_socket()
        self.buffered = BufferedSocket(sock) if isinstance(sock, socket.socket) else None
        return self.buffered or sock

    def loop_misc(self) -> MQTTErrorCode:
        """Run the keepalive check; bytes received after the PINGREQ prove the link alive."""
        # paho drops the link when a PINGRESP is not back within the keepalive, even
        # while messages stream in. Behind a backlog of small messages (Shelly Gen1
        # values: ~45 bytes each, tens of thousands in the socket buffers) the PINGRESP
        # waits longer than that, and every drop makes the broker resend all that is
        # unacknowledged (measured: 2 drops, 214,000 DUP messages in 2 minutes). A silent
        # link still times out (paho's own check: no bytes for a keepalive with a ping
        # outstanding). ``_ping_t`` and ``_last_bytes_received`` are paho 2.x privates,
        # pinned by tests/edge/test_mqtt_paho_private.py.
        if self._ping_t and self._last_bytes_received > self._ping_t:
            self._ping_t = 0
        return super().loop_misc()
