"""An in-memory InfluxDB ``/write`` endpoint, for ``httpx.MockTransport``.

:class:`FakeInflux` is the fake behind the writers' transport seam::

    influx = FakeInflux()
    writer = V1Writer(settings, transport=httpx.MockTransport(influx))

It stores lines in arrival order and can be down (connection refused), answer given
responses first, answer one status for everything, be slow, hold requests until
released, and refuse lines containing ``BAD``: like influxd 1.x, a request with bad
lines stores its good lines and answers 400.
"""

from __future__ import annotations

import gzip
import threading
import time

import httpx

from gateway.influx.spill import split_lines

__all__ = ["FakeInflux"]


class FakeInflux:
    """A scriptable ``/write`` handler (see the module docstring); thread-safe."""

    def __init__(self, *, hold_timeout_s: float = 30.0) -> None:
        self.up = True
        self.stored: list[str] = []
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.answers: list[httpx.Response] = []
        """Served first, one per request."""
        self.status_when_up = 204
        self.delay_s = 0.0
        self.request_lines: list[int] = []
        """Lines per request that reached the data (in arrival order)."""
        self.precisions: list[str] = []
        """The ``precision`` parameter of each request that reached the data."""
        self.held = 0
        """Requests waiting at the gate now."""
        self._hold_timeout_s = hold_timeout_s
        self._gate = threading.Event()
        self._gate.set()
        self._lock = threading.Lock()

    def hold(self) -> None:
        """Make requests wait (each in its sender's thread) until :meth:`release`."""
        self._gate.clear()

    def release(self) -> None:
        """Let held and future requests through."""
        self._gate.set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Answer one request."""
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if not self._gate.is_set():
                with self._lock:
                    self.held += 1
                try:
                    if not self._gate.wait(self._hold_timeout_s):
                        raise AssertionError("a request was held and never released")
                finally:
                    with self._lock:
                        self.held -= 1
            if self.delay_s:
                time.sleep(self.delay_s)  # a slow server, to widen races
            if not self.up:
                raise httpx.ConnectError("connection refused", request=request)
            with self._lock:
                answer = self.answers.pop(0) if self.answers else None
            if answer is not None:
                return answer
            if self.status_when_up != 204:
                return httpx.Response(self.status_when_up, text="database not found")
            return self._store(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _store(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        lines = [line.decode() for line in split_lines(body)]
        bad = [line for line in lines if "BAD" in line]
        with self._lock:
            self.stored.extend(line for line in lines if "BAD" not in line)
            self.request_lines.append(len(lines))
            self.precisions.append(request.url.params.get("precision", ""))
        if bad:
            error = f"partial write: unable to parse '{bad[0]}' dropped={len(bad)}"
            return httpx.Response(400, json={"error": error})
        return httpx.Response(204)
