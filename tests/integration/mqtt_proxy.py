"""A TCP proxy between a client and the real broker that can lose the client's PUBACKs.

It forwards bytes both ways; from the client it reads whole MQTT packets (fixed header,
remaining length) so that, while :attr:`AckLosingProxy.lose_acks` is set, it drops
every PUBACK the client sends (and counts them). :meth:`AckLosingProxy.cut` then closes
every connection: the broker sees a client that vanished with QoS 1 messages it never
acknowledged, and resends them with ``DUP`` when the client's session comes back. That
is a redelivery made to order, with nothing mocked on either side.
"""

from __future__ import annotations

import contextlib
import socket
import threading

__all__ = ["AckLosingProxy"]

_PUBACK = 4


def _packet_length(buf: bytes | bytearray) -> int | None:
    """Bytes of the first whole MQTT packet in ``buf``, or None if it is not whole yet."""
    multiplier, remaining = 1, 0
    for i in range(1, min(len(buf), 5)):
        byte = buf[i]
        remaining += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            total = i + 1 + remaining
            return total if len(buf) >= total else None
        multiplier *= 128
    return None


class AckLosingProxy:
    """Listens on 127.0.0.1 (:attr:`port`) and forwards to ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.lose_acks = threading.Event()
        self.lost = 0
        """PUBACKs dropped so far."""
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._closed = False
        self._accepting = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                broker = socket.create_connection(self._upstream, timeout=10)
            except OSError:
                client.close()
                continue
            broker.settimeout(None)
            with self._lock:
                self._open += [client, broker]
            threading.Thread(target=self._down, args=(broker, client), daemon=True).start()
            threading.Thread(target=self._up, args=(client, broker), daemon=True).start()

    def _down(self, broker: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := broker.recv(65536):
                client.sendall(data)
        self._close(broker, client)

    def _up(self, client: socket.socket, broker: socket.socket) -> None:
        buf = bytearray()
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                buf += data
                while (n := _packet_length(buf)) is not None:
                    packet, buf = bytes(buf[:n]), buf[n:]
                    if packet[0] >> 4 == _PUBACK and self.lose_acks.is_set():
                        self.lost += 1
                        continue
                    broker.sendall(packet)
        self._close(client, broker)

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cut(self) -> None:
        """Close every connection now (both sides), as a network failure would."""
        with self._lock:
            socks, self._open = self._open, []
        self._close(*socks)

    def close(self) -> None:
        """Stop listening and close every connection."""
        self._closed = True
        # On Linux, close() does not wake a thread blocked in accept(); shutdown() does.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accepting.join(5)
        self.cut()
