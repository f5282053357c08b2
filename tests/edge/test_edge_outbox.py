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


def _seq_payload(seq: int) -> bytes:
    return f"event {seq}".encode()


def test_sequences_are_numbered_in_the_storing_transaction_across_restarts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path)
    first = [box.append("t", "dev", _seq_payload)[0] for _ in range(6)]
    assert first == [0, 1, 2, 3, 4, 5]
    assert [i.payload for i in box.peek()] == [_seq_payload(s) for s in first]
    box.ack([i.id for i in box.peek()])  # delivered and deleted: the counter stays
    box.close()
    box = Outbox(path)
    assert box.next_sequence("dev") == 6
    assert [box.append("t", "dev", _seq_payload)[0] for _ in range(3)] == [6, 7, 8]
    # a crash (no close, no checkpoint): the next process goes on with no gap
    crashed = Outbox(path)
    assert crashed.append("t", "dev", _seq_payload)[0] == 9
    assert Outbox(path).append("t", "other", _seq_payload)[0] == 0  # per device
    box.close()
    crashed.close()


def test_a_failed_store_uses_no_sequence(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        assert box.append("t", "dev", _seq_payload)[0] == 0

        def broken(_seq: int) -> bytes:
            raise ValueError("cannot encode")

        with pytest.raises(ValueError, match="cannot encode"):
            box.append("t", "dev", broken)
        assert box.depth == 1
        assert box.append("t", "dev", _seq_payload)[0] == 1


def test_a_killed_writer_commits_the_event_and_its_number_together(tmp_path: Path) -> None:
    """SIGKILL between reading the counter and COMMIT: neither the event nor the number."""
    import os
    import signal
    import subprocess
    import sys

    path = tmp_path / "o.db"
    with Outbox(path) as box:
        for _ in range(3):
            box.append("t", "dev", _seq_payload)
    code = (
        "import os, signal, sys; from edge.outbox import Outbox\n"
        "box = Outbox(sys.argv[1])\n"
        "def enc(seq):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "box.append('t', 'dev', enc)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run([sys.executable, "-c", code, str(path)], env=env, check=False)
    assert done.returncode == -signal.SIGKILL
    with Outbox(path) as box:
        assert [i.sequence for i in box.peek()] == [0, 1, 2]
        assert box.append("t", "dev", _seq_payload)[0] == 3  # not skipped, not reused


def test_sequence_beyond_the_counter_is_taken_from_stored_rows(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        box.put("t", b"x", device="dev", sequence=41)  # e.g. stored by an older version
    with Outbox(path) as box:
        assert box.next_sequence("dev") == 42
        assert box.append("t", "dev", _seq_payload)[0] == 42


def test_a_block_reserving_database_resumes_after_its_block(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        box.put("t", b"x", device="dev", sequence=7)
    db = sqlite3.connect(path)
    with db:  # what the block-reserving version left behind: the end of its block
        db.execute("INSERT INTO meta(key, value) VALUES ('seq:dev', 1000)")
    db.close()
    with Outbox(path) as box:
        assert box.append("t", "dev", _seq_payload)[0] == 1000  # never a reused number


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


def test_an_outbox_keeps_its_id_and_a_recreated_one_gets_a_new_one(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        first = box.id
    with Outbox(tmp_path / "o.db") as box:
        assert box.id == first
    (tmp_path / "o.db").unlink()
    with Outbox(tmp_path / "o.db") as box:
        assert box.id != first
        assert len(box.id) == 32
