"""The MQTT source's batching by size and age (no broker needed: the inbox is fed)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from contract import TopicScheme
from gateway.mqtt_source import MqttSource, _Partition
from gateway.services import free_port
from gateway.settings import MqttSourceSettings


@pytest.fixture
def partition() -> Iterator[_Partition]:
    # Nothing listens on the port: paho keeps retrying in the background, harmlessly.
    settings = MqttSourceSettings(port=free_port(), batch_max_age_ms=200)
    source = MqttSource(settings, TopicScheme(), batch_max=3, stop=threading.Event())
    part = source.build_part("in", "0", None)
    yield part
    part.close()


def _feed(part: _Partition, n: int, age: timedelta) -> None:
    for i in range(n):
        part._inbox.append(("t", b"x", i + 1, 1, datetime.now(UTC) - age))


def test_a_young_partial_batch_waits_until_it_is_due(partition: _Partition) -> None:
    _feed(partition, 2, timedelta(0))
    assert list(partition.next_batch()) == []
    wake = partition.next_awake()
    assert wake is not None
    assert timedelta(milliseconds=100) < wake - datetime.now(UTC) <= timedelta(milliseconds=200)


def test_an_old_partial_batch_goes_at_once(partition: _Partition) -> None:
    _feed(partition, 2, timedelta(milliseconds=300))
    assert len(list(partition.next_batch())) == 2


def test_a_full_batch_goes_at_once_and_no_more(partition: _Partition) -> None:
    _feed(partition, 5, timedelta(0))
    assert partition.next_awake() is None
    assert len(list(partition.next_batch())) == 3
    assert list(partition.next_batch()) == []  # the two left are young


def test_messages_are_acknowledged_only_after_the_epoch(partition: _Partition) -> None:
    acked: list[int] = []
    partition._client.ack = lambda mid, qos: acked.append(mid)  # type: ignore[method-assign]
    _feed(partition, 3, timedelta(0))
    assert len(list(partition.next_batch())) == 3
    _feed(partition, 3, timedelta(0))
    list(partition.next_batch())
    assert acked == []  # same epoch: nothing acknowledged yet
    partition.snapshot()  # the epoch closes
    list(partition.next_batch())
    assert acked == [1, 2, 3, 1, 2, 3]
