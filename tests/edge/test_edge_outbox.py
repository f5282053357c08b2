"""The outbox: durable FIFO, sequences that never repeat, a budget that drops the oldest."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge.outbox import Outbox


def test_fifo_and_ack(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        for i in range(5):
            box.put("t", f"e{i}".encode())
        items = box.peek(limit=3)
        assert [i.payload for i in items] == [b"e0", b"e1", b"e2"]
        assert [i.payload for i in box.peek(after_id=items[-1].id)] == [b"e3", b"e4"]
        box.ack([items[0].id, items[1].id])
        assert box.depth == 3
        assert [i.payload for i in box.peek()] == [b"e2", b"e3", b"e4"]


def test_events_survive_reopen_and_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path)
    box.put("t", b"kept")
    # no close(): as after a crash
    again = Outbox(path)
    assert [i.payload for i in again.peek()] == [b"kept"]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()
    box.close()


def test_sequence_persists_across_restart_and_never_repeats(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, sequence_block=4)
    first = [box.next_sequence("dev") for _ in range(6)]
    assert first == [0, 1, 2, 3, 4, 5]
    box.close()
    box = Outbox(path, sequence_block=4)
    second = [box.next_sequence("dev") for _ in range(3)]
    assert min(second) > max(first)
    assert second == sorted(second)
    # a crash (no close) right after a reservation still never reuses
    crashed_last = second[-1]
    box2 = Outbox(path, sequence_block=4)
    assert box2.next_sequence("dev") > crashed_last
    assert Outbox(path).next_sequence("other") == 0  # per device
    box.close()
    box2.close()


def test_sequence_beyond_reservation_is_taken_from_stored_rows(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        box.put("t", b"x", device="dev", sequence=41)  # e.g. stored by an older version
    with Outbox(path) as box:
        assert box.next_sequence("dev") == 42


def test_budget_in_events_drops_oldest_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, max_events=10) as box:
        dropped = [box.put("t", f"e{i}".encode()) for i in range(25)]
        assert sum(dropped) == 15
        assert box.depth == 10
        assert [i.payload for i in box.peek(limit=100)] == [f"e{i}".encode() for i in range(15, 25)]
        assert box.stats().dropped_total == 15
    with Outbox(path, max_events=10) as box:
        assert box.stats().dropped_total == 15  # the count survives a restart
        assert box.depth == 10


def test_budget_in_bytes_drops_oldest(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=4096) as box:
        for i in range(20):
            box.put("t", bytes([i]) * 1000)
        stats = box.stats()
        assert stats.bytes <= 4096
        assert stats.depth == 4
        assert stats.dropped_total == 16
        assert box.peek()[0].payload[0] == 16


def test_an_event_larger_than_the_budget_is_still_kept(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=4096) as box:
        box.put("t", b"a" * 100)
        assert box.put("t", b"b" * 5000) == 1
        assert [len(i.payload) for i in box.peek()] == [5000]


def test_ack_of_a_dropped_event_is_harmless(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_events=2) as box:
        box.put("t", b"1")
        old = box.peek()[0].id
        box.put("t", b"2")
        box.put("t", b"3")
        box.ack([old])
        assert box.depth == 2


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_durability_modes(tmp_path: Path, durability: str) -> None:
    with Outbox(tmp_path / "o.db", durability=durability) as box:  # type: ignore[arg-type]
        box.put("t", b"x")
        assert box.depth == 1
