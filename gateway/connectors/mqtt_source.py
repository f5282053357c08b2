"""A Bytewax source that reads MQTT with at-least-once delivery.

Each partition holds one :class:`~edge.mqtt.MqttLink` (the project's paho adapter,
which translates paho's errors) with a stable client id, a persistent session, QoS 1,
manual acknowledgement and buffered socket reads. Messages handed to the dataflow in one
epoch are acknowledged to the broker only at the start of the first ``next_batch``
after that epoch's ``snapshot()``: Bytewax calls it once the epoch is complete (and
committed, with recovery on), so a crash before then makes the broker re-deliver
(docs/gateway.md, "Delivery: at least once in, exactly once in effect"). Partitions
subscribe with a shared subscription so the broker splits the load between them.

With ``settings.tls`` every partition connects over TLS (docs/security.md). A filter
the broker refuses in its SUBACK (MQTT 5 reason code 0x80 or more) is logged and
handed to ``on_refused``; the source counts as subscribed only once a filter is granted.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from contract import TopicKind, TopicScheme
from dataflows.batch import MessageBatch
from edge.mqtt import MqttLink, MqttSettings, Refusal, message_topic
from gateway.connectors.delivery_stamps import DeliveryStamps
from gateway.settings import MqttSourceSettings

__all__ = ["MqttSource", "partition_client_id", "partition_link_settings"]

log = logging.getLogger(__name__)

_IDLE_WAIT = timedelta(milliseconds=100)
_STOP_POLL = timedelta(milliseconds=20)
_CLOSE_WAIT_S = 10.0
_NO_WAIT = timedelta(0)


def partition_link_settings(settings: MqttSourceSettings, client_id: str) -> MqttSettings:
    """Return the link settings of one source partition (persistent, MQTT 5 limits).

    Receive Maximum caps the messages the broker sends a partition unacknowledged,
    which bounds its inbox (acknowledgements wait for the epoch): real backpressure.
    """
    return settings.link_settings(client_id).model_copy(
        update={
            "keepalive_s": 30,
            "receive_maximum": settings.receive_maximum,
            "max_packet_bytes": settings.max_packet_bytes,
            "reconnect_min_s": 1.0,
            "reconnect_max_s": 30.0,
        }
    )


class _Partition(StatefulSourcePartition[MessageBatch, dict[str, Any]]):
    _closing = False
    thread_id: int | None = None
    redelivered = 0
    """Messages the broker sent again (MQTT ``dup`` flag): after a restart, those that
    were in flight and not acknowledged."""
    received = 0
    """Messages this partition took from the broker (raw, before any decoding)."""

    def __init__(
        self,
        settings: MqttSourceSettings,
        topic_filters: list[str],
        client_id: str,
        batch_max: int,
        stop: threading.Event | None,
        subscribed: threading.Event,
        on_refused: Callable[[Refusal], None] | None = None,
        stamps: DeliveryStamps | None = None,
    ) -> None:
        self._settings = settings
        # Arrival times: unique, and a redelivery's is its first delivery's (adapters
        # derive the sequence of a message without a time of its own from it).
        self.stamps = stamps or DeliveryStamps()
        self._filters = topic_filters
        self._batch_max = batch_max
        self._stop = stop
        # paho's thread appends, the worker pops: deque ops are atomic under the GIL.
        self._inbox: deque[tuple[str, bytes, int, int, int]] = deque()
        # Bytes waiting in the inbox. Above ``inbox_max_bytes`` paho's thread waits in
        # on_message, so the socket is not read and TCP pushes back on the broker: the
        # inbox stays bounded even where a broker does not keep to Receive Maximum
        # (mosquitto 2.0.11 sends on after the first acknowledgements).
        self._inbox_bytes = 0
        self._room = threading.Condition()
        self._in_epoch: list[int] = []
        self._to_ack: list[int] = []
        self.link = MqttLink(
            partition_link_settings(settings, client_id),
            on_connect=self._on_connect,
            on_message=self._on_message,
            on_refused=on_refused,
            on_subscribed=lambda _granted: subscribed.set(),
            manual_ack=True,
            buffered_reads=True,
        )
        self.link.start(wait_s=None)

    @property
    def connected(self) -> bool:
        """Whether the partition's link is connected now."""
        return self.link.connected

    def _on_connect(self, link: MqttLink) -> None:
        self.thread_id = threading.get_native_id()  # paho's network thread (CPU metric)
        # One SUBSCRIBE for every filter: a SUBACK granting any sets ``subscribed``.
        link.subscribe(self._filters, qos=1)

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)  # bytes already (no copy); typed bytes | bytearray
        room = self._room
        with room:
            while self._inbox_bytes > self._settings.inbox_max_bytes and not self._closing:
                room.wait(0.5)
            self._inbox_bytes += len(payload)
        self.received += 1
        if msg.dup:
            self.redelivered += 1
        topic = message_topic(msg)
        stamp = self.stamps.stamp(msg.mid, msg.qos, msg.dup, topic, payload)
        self._inbox.append((topic, payload, msg.mid, msg.qos, stamp))

    def next_batch(self) -> Iterable[MessageBatch]:
        # Bytewax calls this only once the previous epoch is complete: stored, flushed
        # and (with recovery) committed. So what that epoch took may be acknowledged.
        if self._to_ack:
            self.link.ack(self._to_ack, 1)
            acked = self.stamps.acked
            for mid in self._to_ack:
                acked(mid)
            self._to_ack.clear()
        if self._stop is not None and self._stop.is_set():
            return self._stopping()
        inbox = self._inbox
        if not inbox:
            return []
        # Batch by size and age: wait for a full batch, but never let the oldest
        # message wait longer than max_age. Few, larger batches mean few, larger
        # InfluxDB writes, and nothing is held across an acknowledgement.
        if len(inbox) < self._batch_max and not self._due(inbox[0][4]):
            return []
        # One item for the whole batch: Bytewax then moves one object, not thousands.
        batch = MessageBatch()
        topics, payloads, received = batch.topics, batch.payloads, batch.received_us
        in_epoch = self._in_epoch
        popleft = inbox.popleft
        size = 0
        for _ in range(min(len(inbox), self._batch_max)):
            topic, payload, mid, qos, received_us = popleft()
            if qos > 0:
                in_epoch.append(mid)
            topics.append(topic)
            payloads.append(payload)
            received.append(received_us)
            size += len(payload)
        with self._room:
            self._inbox_bytes -= size
            self._room.notify()
        return [batch]

    def _stopping(self) -> list[MessageBatch]:
        """Stop gracefully: take nothing more, then end once all taken is acknowledged.

        Messages already handed to the flow are acknowledged at the start of the first
        ``next_batch`` after the epoch that holds them closes; then the input ends and
        the flow with it. What waits in the inbox was never handed over: it is not
        acknowledged, and the broker delivers it again to the next gateway.
        """
        if not self._in_epoch:  # everything taken is in closed epochs: acknowledged
            raise StopIteration
        return []

    def _due(self, oldest_us: int) -> bool:
        max_age_us = self._settings.batch_max_age_ms * 1000
        return max_age_us <= 0 or time.time_ns() // 1000 - oldest_us >= max_age_us

    def next_awake(self) -> datetime | None:
        inbox = self._inbox
        if self._stop is not None and self._stop.is_set():
            return datetime.now(UTC) + _STOP_POLL
        if not inbox:
            # Sleep while idle instead of being polled every millisecond.
            return datetime.now(UTC) + _IDLE_WAIT
        if len(inbox) >= self._batch_max:
            return None
        wake_us = inbox[0][4] + self._settings.batch_max_age_ms * 1000
        return datetime.fromtimestamp(wake_us / 1_000_000, UTC)

    def snapshot(self) -> dict[str, Any]:
        # The stamps of this epoch's messages, acknowledged only after it is committed:
        # a restart before the acknowledgements gives their redeliveries the same stamps.
        state = self.stamps.snapshot(self._in_epoch)
        self._to_ack.extend(self._in_epoch)
        self._in_epoch = []
        return state

    def close(self) -> None:
        self._closing = True
        with self._room:
            self._room.notify_all()
        # Packets leave in order: once the DISCONNECT is out, so are the last PUBACKs;
        # the link drains the socket before it closes, so the broker reads them all.
        self.link.stop(graceful_s=_CLOSE_WAIT_S)


def partition_client_id(settings: MqttSourceSettings, partition: int | str) -> str:
    """Return the client id (and so the broker session) of one source partition."""
    group = settings.share_group or "plain"  # no share group: plain subscriptions
    return f"{settings.client_id_prefix}-{group}-{partition}"


class MqttSource(FixedPartitionedSource[MessageBatch, dict[str, Any]]):
    """Telemetry, status and commands of every device, over ``settings.partitions`` clients.

    Give it settings resolved for the cluster (:meth:`MqttSourceSettings.for_cluster`).
    """

    def __init__(
        self,
        settings: MqttSourceSettings,
        topics: TopicScheme,
        *,
        batch_max: int | None = None,
        stop: threading.Event | None = None,
        extra_filters: Callable[[int], list[str]] | None = None,
        on_refused: Callable[[Refusal], None] | None = None,
    ) -> None:
        self.settings = settings
        if settings.tls is not None:
            settings.tls.ssl_context()  # refuse unreadable TLS files now, not in a worker
        self.on_refused = on_refused
        """Called (on a network thread) with each subscription the broker refuses."""
        group = settings.share_group
        self.topic_filter = topics.subscription(TopicKind.TELEMETRY, share_group=group)
        self.topic_filters = [
            self.topic_filter,
            topics.subscription(TopicKind.COMMANDS, share_group=group),
        ]
        """What every partition subscribes to (shared: the broker splits the load)."""
        self.status_filter = topics.subscription(TopicKind.STATUS)
        """Device status, subscribed by partition 0 only and *not* shared: MQTT 5 sends
        no retained messages to shared subscriptions, and the retained status is how
        the gateway learns, at start, which devices are offline now."""
        self.batch_max = settings.batch_max_messages if batch_max is None else batch_max
        self.extra_filters = extra_filters
        """Partition index -> more filters (the adapters' foreign topics)."""
        self.stop = stop
        """Set it to end the flow gracefully (the source reaches end of input)."""
        self.subscribed = threading.Event()
        """Set once the broker acknowledged a partition's subscription."""
        self.partitions: list[_Partition] = []
        """Partitions built in this process (for health checks)."""

    def list_parts(self) -> list[str]:
        """Every worker can reach the broker; Bytewax assigns each partition once.

        Bytewax balances the assignment (each partition goes to the worker holding the
        fewest so far), so with ``processes x workers`` partitions every worker gets one.
        Unresolved ``"auto"`` settings count as one process of one worker.
        """
        return [str(i) for i in range(self.settings.partition_count())]

    def build_part(
        self, step_id: str, for_part: str, resume_state: dict[str, Any] | None
    ) -> _Partition:
        """Connect one MQTT client (stable id, persistent session)."""
        client_id = partition_client_id(self.settings, for_part)
        filters = self.topic_filters + ([self.status_filter] if for_part == "0" else [])
        if self.extra_filters is not None:
            filters += self.extra_filters(int(for_part))
        part = _Partition(
            self.settings,
            filters,
            client_id,
            self.batch_max,
            self.stop,
            self.subscribed,
            self.on_refused,
            _stamps(int(for_part), self.settings.partition_count(), resume_state),
        )
        self.partitions.append(part)
        return part

    def connected(self) -> bool:
        """Whether every partition of this process is connected to the broker."""
        return all(p.connected for p in self.partitions)

    def redelivered(self) -> int:
        """Messages the broker sent again (``dup``), over this process's partitions."""
        return sum(p.redelivered for p in self.partitions)

    def received(self) -> int:
        """Messages this process's partitions took from the broker (before the exchange)."""
        return sum(p.received for p in self.partitions)

    def client_cpu_seconds(self) -> float:
        """CPU time of the MQTT clients' network threads (receive, parse, acknowledge)."""
        return sum(_thread_cpu_s(p.thread_id) for p in self.partitions)


def _stamps(partition: int, partitions: int, state: dict[str, Any] | None) -> DeliveryStamps:
    stamps = DeliveryStamps(partition, partitions)
    stamps.restore(state)
    return stamps


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _thread_cpu_s(tid: int | None) -> float:
    """User + system CPU seconds of one thread of this process (Linux ``/proc``)."""
    if tid is None:
        return 0.0
    try:
        with open(f"/proc/self/task/{tid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:  # the thread ended, or not Linux
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS
