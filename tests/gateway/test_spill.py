import json
import sqlite3
import zlib
from pathlib import Path

import pytest

from contract.errors import StorageError
from gateway.influx.spill import PackedBatch, SpillBuffer, split_lines


def _lines(prefix: str, n: int) -> list[str]:
    return [f"m,t={prefix} v={i} {i}" for i in range(n)]


def test_fifo_with_coalescing_up_to_max_points(tmp_path: Path) -> None:
    spill = SpillBuffer(tmp_path / "s.sqlite", max_bytes=1 << 20)
    for name in "abc":
        spill.append(PackedBatch.pack(_lines(name, 3)))
    assert (spill.batches, spill.points) == (3, 9)

    first = spill.peek(max_points=7)  # two rows fit, the third would exceed 7
    assert first is not None
    assert first.lines == _lines("a", 3) + _lines("b", 3)
    spill.remove(first)
    assert (spill.batches, spill.points) == (1, 3)

    # A row larger than max_points still comes out whole, alone.
    last = spill.peek(max_points=1)
    assert last is not None
    assert last.lines == _lines("c", 3)
    spill.remove(last)
    assert spill.peek(10) is None
    assert spill.bytes == 0
    spill.close()


def test_lines_with_newlines_survive(tmp_path: Path) -> None:
    spill = SpillBuffer(tmp_path / "s.sqlite", max_bytes=1 << 20)
    odd = ['deadletters,reason=x error="line one\nline two",size=1i 1', "caf\u00e9 v=1 2"]
    spill.append(PackedBatch.pack(odd))
    got = spill.peek(10)
    assert got is not None
    assert got.lines == odd
    spill.close()


def test_budget_refuses_unless_empty_or_forced(tmp_path: Path) -> None:
    big = PackedBatch.pack([f"m v={i}.{i * 7919} {i * 104729}" for i in range(2000)])
    spill = SpillBuffer(tmp_path / "s.sqlite", max_bytes=big.size + 10)
    assert spill.fits(big)
    spill.append(big)
    assert not spill.fits(big)
    with pytest.raises(StorageError, match="full"):
        spill.append(big)
    spill.append(big, force=True)
    assert spill.batches == 2
    spill.close()

    # An empty spill takes a batch larger than its whole budget: it could never fit.
    tiny = SpillBuffer(tmp_path / "t.sqlite", max_bytes=1)
    tiny.append(big)
    assert tiny.batches == 1
    tiny.close()


def test_survives_reopen_and_removes_its_file_when_empty(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spill = SpillBuffer(path, max_bytes=1 << 20)
    spill.append(PackedBatch.pack(_lines("a", 5)))
    spill.close()
    assert path.exists()

    again = SpillBuffer(path, max_bytes=1 << 20)
    assert (again.batches, again.points) == (1, 5)
    batch = again.peek(100)
    assert batch is not None
    assert batch.lines == _lines("a", 5)
    again.remove(batch)
    again.close()
    assert not path.exists()


def test_claim_gives_distinct_slots_and_adopts_orphans(tmp_path: Path) -> None:
    first = SpillBuffer.claim(tmp_path, "k", max_bytes=1 << 20)
    second = SpillBuffer.claim(tmp_path, "k", max_bytes=1 << 20)
    other_target = SpillBuffer.claim(tmp_path, "other", max_bytes=1 << 20)
    assert first.path != second.path
    first.append(PackedBatch.pack(_lines("first", 2)))
    second.append(PackedBatch.pack(_lines("second", 2)))
    other_target.append(PackedBatch.pack(_lines("other", 2)))
    first.close()
    second.close()  # both keep their data on disk: a crash or a stop mid-outage

    # One writer now: it takes slot 0 and adopts slot 1, but not the other target's.
    only = SpillBuffer.claim(tmp_path, "k", max_bytes=1 << 20)
    assert only.path == first.path
    assert only.points == 4
    batch = only.peek(100)
    assert batch is not None
    assert batch.lines == _lines("first", 2) + _lines("second", 2)
    assert not second.path.exists()
    assert other_target.points == 2
    only.remove(batch)
    only.close()
    assert not only.path.exists()
    other_target.close()
    assert other_target.path.exists()  # still holds data: kept for its next run


def test_a_held_slot_is_not_adopted(tmp_path: Path) -> None:
    holder = SpillBuffer.claim(tmp_path, "k", max_bytes=1 << 20)
    holder.append(PackedBatch.pack(_lines("held", 2)))
    newcomer = SpillBuffer.claim(tmp_path, "k", max_bytes=1 << 20)
    assert newcomer.points == 0
    assert holder.points == 2
    newcomer.close()
    holder.close()


def test_bodies_keep_their_precision_and_are_not_coalesced_across_it(tmp_path: Path) -> None:
    spill = SpillBuffer(tmp_path / "s.sqlite", max_bytes=1 << 20)
    spill.append(PackedBatch.pack_body(b"m v=1 1\n", 1, "u"))
    spill.append(PackedBatch.pack_body(b"m v=2 2\nm v=3 3\n", 2, "u"))
    spill.append(PackedBatch.pack(["m v=4 4"]))  # lines: nanoseconds
    first = spill.peek(100)
    assert first is not None
    assert (first.precision, first.body, first.points) == ("u", b"m v=1 1\nm v=2 2\nm v=3 3\n", 3)
    spill.remove(first)
    second = spill.peek(100)
    assert second is not None
    assert (second.precision, second.lines) == ("ns", ["m v=4 4"])
    spill.remove(second)
    spill.close()


def test_rows_written_before_bodies_were_bytes_are_still_read(tmp_path: Path) -> None:
    # The former format: a zlib-compressed JSON list of lines, nanoseconds.
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE batch (id INTEGER PRIMARY KEY AUTOINCREMENT, points INTEGER NOT NULL,"
        " bytes INTEGER NOT NULL, body BLOB NOT NULL)"
    )
    old = ['deadletters error="a\nb" 1', "m v=2 2"]
    blob = zlib.compress(json.dumps(old).encode(), 1)
    db.execute("INSERT INTO batch (points, bytes, body) VALUES (?, ?, ?)", (2, len(blob), blob))
    db.commit()
    db.close()

    spill = SpillBuffer(path, max_bytes=1 << 20)
    spill.append(PackedBatch.pack(["m v=3 3"]))
    batch = spill.peek(100)
    assert batch is not None
    assert batch.precision == "ns"
    assert batch.lines == [*old, "m v=3 3"]
    spill.remove(batch)
    spill.close()


def test_split_lines_keeps_newlines_inside_string_fields_only() -> None:
    body = (
        b'dl,reason=x error="one\ntwo",size=1i 1\n'
        b'm,t=a\\ "b v=1 2\n'  # a quote in a tag opens no string
        b'm,t=c v="esc \\" quote\n and newline" 3\n'
        b"plain v=4 4\n"
    )
    assert split_lines(body) == [
        b'dl,reason=x error="one\ntwo",size=1i 1',
        b'm,t=a\\ "b v=1 2',
        b'm,t=c v="esc \\" quote\n and newline" 3',
        b"plain v=4 4",
    ]
    assert split_lines(b"a v=1 1\n\nb v=2 2\n") == [b"a v=1 1", b"b v=2 2"]
    assert split_lines(b'bad v="open 1\nnext v=2 2\n') == [b'bad v="open 1', b"next v=2 2"]
