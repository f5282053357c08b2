"""The MQTT source's batching by size and age (no broker needed: the inbox is fed)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from paho.mqtt.enums import MQTTErrorCode

from contract import TopicScheme
from dataflows.batch import MessageBatch
from gateway.connectors.mqtt_source import MqttSource, _Partition
from gateway.localstack.services import free_port
from gateway.settings import MqttSourceSettings


@pytest.fixture
def partition() -> Iterator[_Partition]:
    # Nothing listens on the port: paho keeps retrying in the background, harmlessly.
    settings = MqttSourceSettings(port=free_port(), batch_max_age_ms=200)
    source = MqttSource(settings, TopicScheme(), batch_max=3, stop=threading.Event())
    part = source.build_part("in", "0", None)
    yield part
    part.close()


def _feed(part: _Partition, n: int, age: timedelta) -> int:
    """Put ``n`` messages of one arrival time in the inbox; return that time (µs)."""
    arrived = time.time_ns() // 1000 - age // timedelta(microseconds=1)
    for i in range(n):
        part._inbox.append(("t", b"x", i + 1, 1, arrived))
    return arrived


def _count(part: _Partition) -> int:
    batches = list(part.next_batch())
    assert all(isinstance(b, MessageBatch) for b in batches)
    return sum(len(b) for b in batches)


def test_a_young_partial_batch_waits_until_it_is_due(partition: _Partition) -> None:
    # An hour in the future: it cannot become due while the test runs, however slow.
    arrived = _feed(partition, 2, -timedelta(hours=1))
    assert _count(partition) == 0
    wake = partition.next_awake()
    assert wake is not None
    assert wake == datetime.fromtimestamp((arrived + 200_000) / 1e6, UTC)


def test_an_old_partial_batch_goes_at_once(partition: _Partition) -> None:
    _feed(partition, 2, timedelta(milliseconds=300))
    assert _count(partition) == 2


def test_a_full_batch_goes_at_once_and_no_more(partition: _Partition) -> None:
    _feed(partition, 5, -timedelta(hours=1))
    assert partition.next_awake() is None
    assert _count(partition) == 3
    assert _count(partition) == 0  # the two left are young


def test_messages_are_acknowledged_only_after_the_epoch(partition: _Partition) -> None:
    acked: list[int] = []

    def ack(mid: int, qos: int) -> MQTTErrorCode:
        acked.append(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    partition.link.client.ack = ack  # type: ignore[method-assign]  # paho's, recorded
    _feed(partition, 3, timedelta(0))
    assert _count(partition) == 3
    _feed(partition, 3, timedelta(0))
    _count(partition)
    assert acked == []  # same epoch: nothing acknowledged yet
    partition.snapshot()  # the epoch closes
    list(partition.next_batch())
    assert acked == [1, 2, 3, 1, 2, 3]
