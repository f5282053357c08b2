"""Bytewax sinks: points to InfluxDB (pipelined), dead letters to MQTT and InfluxDB.

The points sink is keyed by shard (a ``FixedPartitionedSink``) for one reason: its
partitions' ``snapshot()`` is called at the end of every epoch, before Bytewax lets the
source read the next one. ``write_batch`` hands the encoded bytes to the process's
pipelined writer and returns at once; ``snapshot()`` flushes, returning only when
everything written in the epoch is durable (stored, or in the on-disk spill). The MQTT
source acknowledges an epoch's messages at the start of the next epoch, so an
acknowledgement never passes a write still in flight: that is the durable-through mark.
Every partition of a process shares one writer, so writes from all shards coalesce.
With retention policies, a second shared writer takes the aggregates (their own policy):
an item's readings go to one, its aggregates to the other, and ``snapshot()`` returns
only when both are durable.

The dead-letter sink writes synchronously inside ``write_batch`` (dead letters are rare).
A dead letter the broker refuses to take on the dead-letter topic (MQTT 5 PUBACK reason
code, its ACL) is still stored in ``deadletters``: the refusal is logged with the topic
and counted in ``sensorgate_mqtt_refused_total``, and the flow goes on.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

from contract import DeadLetterEvent, TopicScheme, encode
from contract.errors import BrokerError
from dataflows.adapters.result import Command
from dataflows.batch import shard_key
from dataflows.columns import EncodedPoints
from edge.mqtt import MqttLink, MqttSettings
from gateway.influx.lineprotocol import deadletter_line
from gateway.influx.writer import PointWriter
from gateway.observability.metrics import GatewayMetrics

__all__ = ["CommandSink", "DeadLetterSink", "PointsSink", "PointsWriter"]

log = logging.getLogger(__name__)

WriterFactory = Callable[[], PointWriter]


class PointsWriter(Protocol):
    """A writer that takes encoded bodies without waiting, and flushes on demand."""

    def submit(self, body: bytes, lines: int) -> int:
        """Queue a body of ``lines`` lines; return its sequence number."""

    @property
    def durable_through(self) -> int:
        """The highest sequence number up to which every body is durable."""

    def flush(self, timeout: float | None = None) -> object:
        """Return once every body submitted before the call is durable.

        What it returns (a sequence number, or nothing) is not used by the sink.
        """

    def close(self) -> None:
        """Flush (bounded) and release connections."""


@runtime_checkable
class _Listenable(Protocol):
    """A writer that calls listeners when requests settle (the pipelined writer)."""

    def add_listener(self, listener: Callable[[], None]) -> None: ...

    def remove_listener(self, listener: Callable[[], None]) -> None: ...


_LIBC: ctypes.CDLL | bool | None = None
"""glibc once loaded; False where there is none (``malloc_trim`` is glibc only)."""
_last_trim = 0.0


def _release_free_memory(every_s: float = 1.0) -> None:
    """Give freed heap back to the system (glibc), at most once per ``every_s``.

    Payloads are a few kB each, so they live on glibc's heap; once processed they are
    freed, but glibc keeps the pages, and the process's RSS would stay at its
    high-water mark for good. ``malloc_trim`` returns them (about 1-10 ms).
    """
    global _LIBC, _last_trim
    now = time.monotonic()
    if now - _last_trim < every_s:
        return
    _last_trim = now
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim  # noqa: B018 - glibc only
        except (OSError, AttributeError):
            _LIBC = False
    if isinstance(_LIBC, ctypes.CDLL):
        _LIBC.malloc_trim(0)


class _SharedWriter:
    """One writer per process, shared by the partitions of the points sink."""

    def __init__(self, factory: Callable[[], PointsWriter]) -> None:
        self._factory = factory
        self._writer: PointsWriter | None = None
        self._lock = threading.Lock()
        self._users = 0

    def acquire(self) -> PointsWriter:
        with self._lock:
            if self._writer is None:
                self._writer = self._factory()
            self._users += 1
            return self._writer

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._writer is not None:
                self._writer.close()
                self._writer = None


class _PointsPartition(StatefulSinkPartition[EncodedPoints, None]):
    def __init__(
        self,
        shared: _SharedWriter,
        metrics: GatewayMetrics | None,
        shared_aggregates: _SharedWriter | None = None,
    ) -> None:
        self._shared = shared
        self._shared_aggregates = shared_aggregates
        self._writer = shared.acquire()
        # Without a writer of their own, aggregates go where the readings go.
        self._aggregates = (
            self._writer if shared_aggregates is None else shared_aggregates.acquire()
        )
        self._metrics = metrics
        self._waiting: list[tuple[int, int, EncodedPoints]] = []
        """Items (with the sequence numbers of their two bodies) whose latency is
        observed once they are durable."""
        self._lock = threading.Lock()  # _waiting: the worker adds, a sender may observe
        self._listening = [w for w in self._writers() if isinstance(w, _Listenable)]
        if metrics is not None:
            # Observe the latency when the points became durable, not at the next call.
            for writer in self._listening:
                writer.add_listener(self._observe_durable)

    def write_batch(self, items: list[EncodedPoints]) -> None:
        for item in items:
            seq = agg_seq = 0
            if item.aggregates_body:
                agg_seq = self._aggregates.submit(item.aggregates_body, item.aggregates)
                raw_lines = item.lines - item.aggregates
            else:
                raw_lines = item.lines
            if item.body:
                seq = self._writer.submit(item.body, raw_lines)
            if self._metrics is not None:
                with self._lock:
                    self._waiting.append((seq, agg_seq, item))
        self._observe_durable()

    def _observe_durable(self) -> None:
        metrics = self._metrics
        if metrics is None or not self._waiting:
            return
        through = self._writer.durable_through
        agg_through = self._aggregates.durable_through
        with self._lock:
            waiting = self._waiting
            done = [item for seq, agg, item in waiting if seq <= through and agg <= agg_through]
            if not done:
                return
            self._waiting = [w for w in waiting if w[0] > through or w[1] > agg_through]
        now_us = time.time_ns() // 1000
        counts = {"readings": 0, "aggregates": 0, "late_readings": 0}
        for item in done:
            counts["readings"] += item.readings
            counts["aggregates"] += item.aggregates
            counts["late_readings"] += item.late
            for lag in ((now_us - item.newest_us) / 1e6).tolist():
                metrics.lag.observe(max(0.0, lag))
            for wait in ((now_us - item.received_us) / 1e6).tolist():
                metrics.arrival_to_stored.observe(max(0.0, wait))
        for kind, n in counts.items():
            if n:
                metrics.points_written.labels(kind).inc(n)

    def _writers(self) -> list[PointsWriter]:
        # Aggregates first: their few lines are sent at once, instead of waiting in the
        # queue while the readings' flush waits on InfluxDB.
        if self._aggregates is self._writer:
            return [self._writer]
        return [self._aggregates, self._writer]

    def snapshot(self) -> None:
        # The end of an epoch: nothing may be acknowledged before it is durable.
        for writer in self._writers():
            writer.flush()
        self._observe_durable()
        _release_free_memory()

    def close(self) -> None:
        try:
            for writer in self._writers():
                writer.flush(timeout=30)
            self._observe_durable()
        finally:
            for writer in self._listening:
                writer.remove_listener(self._observe_durable)
            self._shared.release()
            if self._shared_aggregates is not None:
                self._shared_aggregates.release()


class PointsSink(FixedPartitionedSink[EncodedPoints, None]):
    """Writes readings, aggregates and late readings, pipelined, flushed every epoch.

    Items are ``(shard key, EncodedPoints)``; a partition per shard, all partitions of
    a process sharing one writer. With ``aggregates_writer_factory`` the aggregates
    bodies go to a second shared writer (their retention policy); without, to the first.
    """

    def __init__(
        self,
        writer_factory: Callable[[], PointsWriter],
        shards: int,
        metrics: GatewayMetrics | None = None,
        *,
        aggregates_writer_factory: Callable[[], PointsWriter] | None = None,
    ) -> None:
        self._shared = _SharedWriter(writer_factory)
        self._shared_aggregates = (
            None if aggregates_writer_factory is None else _SharedWriter(aggregates_writer_factory)
        )
        self._parts = [shard_key(i) for i in range(shards)]
        self._metrics = metrics

    def hold(self) -> Callable[[], None]:
        """Open this process's writer(s) now, until the returned release is called.

        Bytewax builds a sink partition only when its first item arrives: without this,
        points spilled by a previous run would wait for new traffic before draining.
        """
        held = [self._shared, *([self._shared_aggregates] if self._shared_aggregates else [])]
        for shared in held:
            shared.acquire()

        def release() -> None:
            for shared in held:
                shared.release()

        return release

    def list_parts(self) -> list[str]:
        """One partition per shard."""
        return list(self._parts)

    def part_fn(self, item_key: str) -> int:
        """Route a shard's points to that shard's partition."""
        return int(item_key.rpartition("-")[2]) % len(self._parts)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _PointsPartition:
        """Bind a partition to this process's shared writer(s)."""
        return _PointsPartition(self._shared, self._metrics, self._shared_aggregates)


class _DeadLetterPartition(StatelessSinkPartition[DeadLetterEvent]):
    def __init__(self, writer: PointWriter, link: MqttLink, topic: str, ack_timeout: float) -> None:
        self._writer = writer
        self._link = link
        self._topic = topic
        self._ack_timeout = ack_timeout

    def write_batch(self, items: list[DeadLetterEvent]) -> None:
        tickets = [self._link.publish(self._topic, encode(item), qos=1) for item in items]
        self._writer.write([deadletter_line(item) for item in items])
        for ticket in tickets:
            if not self._link.wait_acknowledged(ticket, self._ack_timeout):
                raise BrokerError(
                    f"the broker did not acknowledge a dead letter on {self._topic!r}"
                    f" within {self._ack_timeout:.0f} s"
                )
            # A refusal (logged and counted by the link) is not raised: the dead letter
            # is stored above, and a dead letter cannot be dead-lettered again.

    def close(self) -> None:
        self._writer.close()
        self._link.stop()


class DeadLetterSink(DynamicSink[DeadLetterEvent]):
    """Publishes dead letters on the dead-letter topic and stores them in ``deadletters``."""

    def __init__(
        self,
        writer_factory: WriterFactory,
        mqtt: MqttSettings,
        topics: TopicScheme,
        *,
        ack_timeout: float = 30.0,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._factory = writer_factory
        self._mqtt = mqtt
        self._topic = topics.deadletter
        self._ack_timeout = ack_timeout
        self._metrics = metrics

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DeadLetterPartition:
        """Give each worker its own writer and MQTT client."""
        settings = self._mqtt.model_copy(
            update={"client_id": f"{self._mqtt.client_id}-{worker_index}", "clean_session": False}
        )
        hook = None if self._metrics is None else self._metrics.mqtt_refusal("deadletters")
        link = MqttLink(settings, on_refused=hook)
        link.start()
        return _DeadLetterPartition(self._factory(), link, self._topic, self._ack_timeout)


class _CommandPartition(StatelessSinkPartition[Command]):
    def __init__(self, link: MqttLink, ack_timeout: float) -> None:
        self._link = link
        self._ack_timeout = ack_timeout

    def write_batch(self, items: list[Command]) -> None:
        tickets = [
            (item, self._link.publish(item.topic, item.payload, qos=item.qos, retain=item.retain))
            for item in items
        ]
        for item, ticket in tickets:
            if item.qos > 0 and not ticket.wait(self._ack_timeout):
                log.warning("the broker did not acknowledge %s on %r", item.reason, item.topic)
            # A refusal is logged (with the topic) and counted by the link: best effort.

    def close(self) -> None:
        self._link.stop()


class CommandSink(DynamicSink[Command]):
    """Publishes what adapters ask for (Sparkplug rebirth requests); rare, best effort."""

    def __init__(
        self,
        mqtt: MqttSettings,
        *,
        ack_timeout: float = 10.0,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._mqtt = mqtt
        self._ack_timeout = ack_timeout
        self._metrics = metrics

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CommandPartition:
        """Give each worker its own MQTT client."""
        settings = self._mqtt.model_copy(
            update={"client_id": f"{self._mqtt.client_id}-{worker_index}"}
        )
        hook = None if self._metrics is None else self._metrics.mqtt_refusal("commands")
        link = MqttLink(settings, on_refused=hook)
        link.start()
        return _CommandPartition(link, self._ack_timeout)
