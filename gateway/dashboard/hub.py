"""Fan-out of server-sent events to every connected browser, on the event loop.

One producer (the alarm feed, the poller) hands the hub a frame; the hub encodes it
once and puts it, without waiting, on each stream's own bounded queue. A stream whose
queue is full is dropped on the spot (its connection closed; the browser reconnects
and gets the current state first), so one slow or stalled browser never delays the
others, and the memory a stream holds is bounded by ``queue_size`` frames.

Not thread-safe: call it on the loop that serves the streams.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["KEEPALIVE", "Frame", "Hub", "Stream", "frame"]


def frame(event: str, data_json: str) -> bytes:
    """Return one server-sent event carrying ``data_json`` (already JSON, one line)."""
    return f"event: {event}\ndata: {data_json}\n\n".encode()


class Frame(NamedTuple):
    """An encoded event and when the hub took it (``time.perf_counter()``)."""

    data: bytes
    at: float


KEEPALIVE = Frame(b": keep-alive\n\n", 0.0)
"""An SSE comment: ignored by the browser, keeps the connection in use."""


class Stream:
    """One browser's event stream: a bounded queue and a way to hang up on it."""

    __slots__ = ("_hang_up", "dropped", "queue")

    def __init__(self, size: int, hang_up: Callable[[], None]) -> None:
        self.queue: asyncio.Queue[Frame | None] = asyncio.Queue(maxsize=size)
        self.dropped = False
        self._hang_up = hang_up

    def drop(self) -> None:
        """Stop serving this stream: close its connection (the handler then ends)."""
        if not self.dropped:
            self.dropped = True
            self._hang_up()


class Hub:
    """The set of live streams and the last frame of each event kind."""

    def __init__(self, *, queue_size: int, max_streams: int) -> None:
        self._queue_size = queue_size
        self._max_streams = max_streams
        self._streams: set[Stream] = set()
        self.last: dict[str, Frame] = {}
        """Event kind -> its latest frame: a new stream starts with these."""
        self.dropped = 0
        """Streams dropped for falling behind, since start."""
        self.write_lag_s: deque[float] = deque(maxlen=20_000)
        """Hub to socket, per stream and frame: how long a frame waited for its write."""

    @property
    def streams(self) -> int:
        """Streams connected now."""
        return len(self._streams)

    def subscribe(self, hang_up: Callable[[], None]) -> Stream | None:
        """Add a stream, primed with the latest frames; None when ``max_streams`` are open."""
        if len(self._streams) >= self._max_streams:
            return None
        stream = Stream(self._queue_size, hang_up)
        for kind_frame in list(self.last.values())[: self._queue_size]:
            stream.queue.put_nowait(Frame(kind_frame.data, time.perf_counter()))
        self._streams.add(stream)
        return stream

    def unsubscribe(self, stream: Stream) -> None:
        """Forget a stream (its handler ended)."""
        self._streams.discard(stream)

    def publish(self, event: str, data: Any) -> None:
        """Send ``data`` (encoded here, once) as ``event`` to every stream."""
        self.publish_json(event, json.dumps(data, separators=(",", ":")))

    def publish_json(self, event: str, data_json: str) -> None:
        """Send already encoded JSON as ``event`` to every stream."""
        encoded = Frame(frame(event, data_json), time.perf_counter())
        self.last[event] = encoded
        for stream in list(self._streams):
            try:
                stream.queue.put_nowait(encoded)
            except asyncio.QueueFull:
                # Behind by a whole queue: it would only ever see stale state. Hang up;
                # the browser reconnects and starts again from self.last.
                self.drop(stream)

    def drop(self, stream: Stream) -> None:
        """Hang up on a stream that fell behind (counted in :attr:`dropped`)."""
        if stream in self._streams:
            self._streams.discard(stream)
            self.dropped += 1
        stream.drop()

    def wrote(self, sent: Frame) -> None:
        """Note that a stream wrote ``sent`` to its socket (for :attr:`write_lag_s`)."""
        if sent is not KEEPALIVE:
            self.write_lag_s.append(time.perf_counter() - sent.at)

    def keep_alive(self) -> None:
        """Send every stream a comment line (proxies close streams that stay silent)."""
        for stream in list(self._streams):
            try:
                stream.queue.put_nowait(KEEPALIVE)
            except asyncio.QueueFull:
                self.drop(stream)

    def close(self) -> None:
        """End every stream (at shutdown)."""
        for stream in list(self._streams):
            try:
                stream.queue.put_nowait(None)
            except asyncio.QueueFull:
                stream.drop()
        self._streams.clear()
