"""Batching by count and by age, per device, reconfigurable live."""

from __future__ import annotations

from datetime import UTC, datetime

from contract.events import Reading
from edge.batcher import Batcher

T = datetime(2026, 1, 1, tzinfo=UTC)


def readings(n: int, start: int = 0) -> list[Reading]:
    return [
        Reading(sensor="s", metric="m", value=float(i), time=T) for i in range(start, start + n)
    ]


def test_batch_closes_by_count() -> None:
    b = Batcher(max_readings=3, max_age_s=60)
    assert b.add("d", readings(2), now=0.0) == []
    [closed] = b.add("d", readings(2, 2), now=1.0)
    assert [r.value for r in closed.readings] == [0.0, 1.0, 2.0]
    assert b.pending == 1
    assert b.next_deadline() == 61.0


def test_batch_closes_by_age() -> None:
    b = Batcher(max_readings=100, max_age_s=5)
    b.add("d", readings(1), now=10.0)
    b.add("d", readings(1, 1), now=14.0)
    assert b.due(14.9) == []
    [closed] = b.due(15.0)
    assert len(closed.readings) == 2
    assert b.next_deadline() is None


def test_batches_are_per_device() -> None:
    b = Batcher(max_readings=2, max_age_s=5)
    b.add("a", readings(1), now=0.0)
    b.add("b", readings(1), now=1.0)
    [closed] = b.add("a", readings(1), now=2.0)
    assert closed.device == "a"
    assert [x.device for x in b.due(6.0)] == ["b"]


def test_smaller_count_applies_to_open_batch_on_reconfigure() -> None:
    b = Batcher(max_readings=100, max_age_s=60)
    b.add("d", readings(7), now=0.0)
    b.reconfigure(max_readings=3, max_age_s=60)
    sizes = [len(x.readings) for x in b.due(1.0)]
    assert sizes == [3, 3, 1]
    assert b.pending == 0


def test_flush_empties_everything() -> None:
    b = Batcher(max_readings=5, max_age_s=60)
    b.add("a", readings(2), now=0.0)
    b.add("b", readings(3), now=0.0)
    assert sorted(len(x.readings) for x in b.flush()) == [2, 3]
    assert b.pending == 0
