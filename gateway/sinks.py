"""Bytewax sinks: readings and dead letters to InfluxDB, dead letters to MQTT.

Sinks write synchronously inside ``write_batch``: when it returns, what it was given
is stored. That is what lets the MQTT source acknowledge a message after its epoch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from contract import DeadLetterEvent, TopicScheme, encode
from contract.errors import BrokerError
from dataflows.device import DeviceOutput, to_us
from dataflows.ingest import Accepted
from edge.mqtt import MqttLink, MqttSettings
from gateway.influx.lineprotocol import deadletter_line, point_lines
from gateway.influx.writer import PointWriter
from gateway.metrics import GatewayMetrics

__all__ = ["DeadLetterSink", "PointsSink"]

log = logging.getLogger(__name__)

WriterFactory = Callable[[], PointWriter]


_MEASUREMENT = {"Accepted": "readings", "Aggregate": "aggregates", "LateReading": "late_readings"}


class _PointsPartition(StatelessSinkPartition[DeviceOutput]):
    def __init__(self, writer: PointWriter, metrics: GatewayMetrics | None) -> None:
        self._writer = writer
        self._metrics = metrics

    def write_batch(self, items: list[DeviceOutput]) -> None:
        lines: list[str] = []
        for item in items:
            lines.extend(point_lines(item))
        self._writer.write(lines)
        if self._metrics is not None:
            self._observe(items)

    def _observe(self, items: list[DeviceOutput]) -> None:
        metrics = self._metrics
        assert metrics is not None
        now_us = time.time_ns() // 1000
        counts: dict[str, int] = {}
        for item in items:
            kind = _MEASUREMENT[type(item).__name__]
            if isinstance(item, Accepted):
                readings = item.event.data.readings
                counts[kind] = counts.get(kind, 0) + len(readings)
                newest = to_us(max(r.time for r in readings))  # one conversion
                metrics.lag.observe(max(0.0, (now_us - newest) / 1e6))
                metrics.arrival_to_stored.observe(
                    max(0.0, (now_us - to_us(item.received_at)) / 1e6)
                )
            else:
                counts[kind] = counts.get(kind, 0) + 1
        for kind, n in counts.items():
            metrics.points_written.labels(kind).inc(n)

    def close(self) -> None:
        self._writer.close()


class PointsSink(DynamicSink[DeviceOutput]):
    """Writes readings, aggregates and late readings to InfluxDB, one write per batch."""

    def __init__(self, writer_factory: WriterFactory, metrics: GatewayMetrics | None = None):
        self._factory = writer_factory
        self._metrics = metrics

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PointsPartition:
        """Give each worker its own writer (its own HTTP connections)."""
        return _PointsPartition(self._factory(), self._metrics)


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
            if not ticket.wait(self._ack_timeout):
                raise BrokerError(
                    f"the broker did not acknowledge a dead letter on {self._topic!r}"
                    f" within {self._ack_timeout:.0f} s"
                )

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
    ) -> None:
        self._factory = writer_factory
        self._mqtt = mqtt
        self._topic = topics.deadletter
        self._ack_timeout = ack_timeout

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DeadLetterPartition:
        """Give each worker its own writer and MQTT client."""
        settings = self._mqtt.model_copy(
            update={"client_id": f"{self._mqtt.client_id}-{worker_index}", "clean_session": False}
        )
        link = MqttLink(settings)
        link.start()
        return _DeadLetterPartition(self._factory(), link, self._topic, self._ack_timeout)
