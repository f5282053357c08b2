"""The points sink: write_batch never waits on a write; the epoch's end waits for all."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
from prometheus_client import CollectorRegistry

from dataflows.columns import EncodedPoints
from gateway.connectors.sinks import PointsSink
from gateway.observability.metrics import GatewayMetrics


class _SlowWriter:
    """A PointsWriter whose writes become durable only when the test says so."""

    def __init__(self) -> None:
        self.submitted: list[bytes] = []
        self.durable = 0
        self.released = threading.Event()
        self.closed = False

    def submit(self, body: bytes, lines: int) -> int:
        self.submitted.append(body)
        return len(self.submitted)

    @property
    def durable_through(self) -> int:
        return self.durable

    def flush(self, timeout: float | None = None) -> None:
        self.released.wait(timeout)
        self.durable = len(self.submitted)

    def close(self) -> None:
        self.closed = True


def _points(body: bytes) -> EncodedPoints:
    return EncodedPoints(body=body, lines=1, readings=1, received_us=np.zeros(1, np.int64))


def test_writes_do_not_wait_and_the_epoch_end_waits_for_every_one() -> None:
    writer = _SlowWriter()
    sink = PointsSink(lambda: writer, shards=2)
    assert sink.list_parts() == ["shard-000", "shard-001"]
    assert sink.part_fn("shard-001") == 1
    part = sink.build_part("points", "shard-000", None)
    part.write_batch([_points(b"a 1\n"), _points(b"b 2\n")])  # returns: nothing durable yet
    assert writer.submitted == [b"a 1\n", b"b 2\n"]
    assert writer.durable_through == 0
    done = threading.Event()
    snapper = threading.Thread(target=lambda: (part.snapshot(), done.set()))
    snapper.start()
    # The epoch cannot end (so the source cannot acknowledge) while writes are in flight.
    assert not done.wait(0.2)
    writer.released.set()
    snapper.join(10)
    assert done.is_set()
    assert writer.durable_through == 2
    part.close()
    assert writer.closed


def test_partitions_of_a_process_share_one_writer() -> None:
    made: list[_SlowWriter] = []

    def factory() -> _SlowWriter:
        made.append(_SlowWriter())
        return made[-1]

    sink = PointsSink(factory, shards=4)
    parts = [sink.build_part("points", f"shard-00{i}", None) for i in range(4)]
    assert len(made) == 1
    made[0].released.set()
    for p in parts[:-1]:
        p.close()
    assert not made[0].closed  # still used by the last partition
    parts[-1].close()
    assert made[0].closed


def test_readings_and_aggregates_go_to_their_own_writers_and_both_must_be_durable() -> None:
    raw, aggregates = _SlowWriter(), _SlowWriter()
    sink = PointsSink(lambda: raw, shards=1, aggregates_writer_factory=lambda: aggregates)
    part = sink.build_part("points", "shard-000", None)
    both = EncodedPoints(
        body=b"readings 1\nlate_readings 2\n",
        aggregates_body=b"aggregates 3\n",
        lines=3,
        readings=1,
        aggregates=1,
        late=1,
    )
    only_windows = EncodedPoints(body=b"", aggregates_body=b"aggregates 4\n", lines=1, aggregates=1)
    part.write_batch([both, _points(b"readings 5\n"), only_windows])
    assert raw.submitted == [b"readings 1\nlate_readings 2\n", b"readings 5\n"]
    assert aggregates.submitted == [b"aggregates 3\n", b"aggregates 4\n"]
    raw.released.set()
    done = threading.Event()
    snapper = threading.Thread(target=lambda: (part.snapshot(), done.set()))
    snapper.start()
    # The readings are durable, the aggregates not yet: the epoch cannot end.
    assert not done.wait(0.2)
    aggregates.released.set()
    snapper.join(10)
    assert done.is_set()
    part.close()
    assert raw.closed
    assert aggregates.closed


class _ListenedWriter(_SlowWriter):
    """A writer that tells its listeners when writes settle (as the pipelined one does)."""

    def __init__(self) -> None:
        super().__init__()
        self.listeners: list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> None:
        self.listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        self.listeners.remove(listener)

    def settle(self) -> None:
        self.durable = len(self.submitted)
        for listener in self.listeners:
            listener()


def test_latency_is_observed_when_the_write_settles_not_at_the_next_call() -> None:
    writer = _ListenedWriter()
    metrics = GatewayMetrics(CollectorRegistry())
    part = PointsSink(lambda: writer, shards=1, metrics=metrics).build_part(
        "points", "shard-000", None
    )
    part.write_batch([_points(b"a 1\n")])
    assert _observed(metrics) == 0  # not durable yet
    writer.settle()  # no write_batch, no snapshot since
    assert _observed(metrics) == 1
    writer.released.set()
    part.close()
    assert writer.listeners == []


def _observed(metrics: GatewayMetrics) -> float:
    return sum(
        s.value
        for family in metrics.arrival_to_stored.collect()
        for s in family.samples
        if s.name.endswith("_count")
    )
