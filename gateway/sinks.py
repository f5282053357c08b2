"""Bytewax sinks: readings and dead letters to InfluxDB, dead letters to MQTT.

Sinks write synchronously inside ``write_batch``: when it returns, what it was given
is stored. That is what lets the MQTT source acknowledge a message after its epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from contract import DeadLetterEvent, TopicScheme, encode
from contract.errors import BrokerError
from dataflows.ingest import Accepted
from edge.mqtt import MqttLink, MqttSettings
from gateway.influx.lineprotocol import deadletter_line, reading_lines
from gateway.influx.writer import PointWriter

__all__ = ["DeadLetterSink", "ReadingsSink"]

log = logging.getLogger(__name__)

WriterFactory = Callable[[], PointWriter]


class _ReadingsPartition(StatelessSinkPartition[Accepted]):
    def __init__(self, writer: PointWriter) -> None:
        self._writer = writer

    def write_batch(self, items: list[Accepted]) -> None:
        lines: list[str] = []
        for item in items:
            lines.extend(reading_lines(item.event))
        self._writer.write(lines)

    def close(self) -> None:
        self._writer.close()


class ReadingsSink(DynamicSink[Accepted]):
    """Writes every reading of accepted telemetry to the ``readings`` measurement."""

    def __init__(self, writer_factory: WriterFactory) -> None:
        self._factory = writer_factory

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ReadingsPartition:
        """Give each worker its own writer (its own HTTP connections)."""
        return _ReadingsPartition(self._factory())


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
