"""How simulators publish: the edge's :class:`~edge.mqtt.MqttLink`, pooled, with counts.

:class:`Publisher` is the narrow seam; :class:`LinkPool` publishes through one or more
edge MQTT links (shared connections, or one connection per device, so each device has
its own client id) and counts the broker's acknowledgements; :class:`MemoryPublisher`
is the in-memory fake for tests. One connection per device, served from one thread,
is :class:`simulators.multiplexed.MultiplexedLinks`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from contract.errors import BrokerError
from edge.mqtt import MqttLink, MqttSettings
from simulators.timebase import LagStats

log = logging.getLogger(__name__)

__all__ = ["LinkPool", "MemoryPublisher", "PublishedMessage", "Publisher"]


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
