"""Helpers for the dashboard server tests: an event-stream reader, raw HTTP, alarm events."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from contract.alarms import AlarmClearedEvent, AlarmRaisedEvent, encode_alarm


class SseReader:
    """Reads ``/api/events`` on a thread and keeps every ``(event, data)`` it gets."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: list[tuple[str, str]] = []
        self.status: int | None = None
        self.closed = threading.Event()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(
            target=self._run, args=(url + "api/events", headers or {}), daemon=True
        )
        self._thread.start()

    def _run(self, url: str, headers: dict[str, str]) -> None:
        event = "message"
        try:
            with self._client.stream("GET", url, headers=headers) as resp:
                self.status = resp.status_code
                self._sock = resp.extensions["network_stream"].get_extra_info("socket")
                for line in resp.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        with self._cond:
                            self.events.append((event, line[6:]))
                            self._cond.notify_all()
        except httpx.HTTPError:
            pass
        finally:
            self.closed.set()
            with self._cond:
                self._cond.notify_all()

    def wait(
        self, what: str, condition: Callable[[list[tuple[str, str]]], bool], timeout: float = 20
    ) -> None:
        """Wait until ``condition(events)`` holds, or fail naming ``what``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition(self.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; got {self.events[-5:]}")
                self._cond.wait(left)

    def close(self) -> None:
        """Stop reading."""
        self._stop.set()
        sock = self._sock
        if sock is not None:
            # Closing the client does not wake a thread blocked in recv(); this does.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._client.close()
        self._thread.join(5)


def raw_request(url: str, request: bytes, timeout: float = 10) -> tuple[int, bytes]:
    """Send raw bytes to the server of ``url``; return the status and the whole answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data


def alarm_events(prefix_alarm: str, site: str, device: str) -> tuple[bytes, bytes]:
    """A raised and a cleared alarm event (encoded) for one alarm of a device."""
    now = datetime.now(UTC)
    common = {
        "alarm_id": prefix_alarm, "site": site, "device": device, "sensor": "env",
        "metric": "temperature", "rule": "hot", "severity": "critical", "value": 95.0,
        "threshold": 40.0, "message": "too hot", "raised_at": now,
    }  # fmt: skip
    raised = AlarmRaisedEvent.create(state="active", event_time=now, **common)
    cleared = AlarmClearedEvent.create(state="cleared", event_time=datetime.now(UTC), **common)
    return encode_alarm(raised), encode_alarm(cleared)
