"""A bounded, durable, first-in first-out buffer of line-protocol batches on local disk.

The pipelined writer spills here what InfluxDB would not take, and drains it later,
oldest first. One buffer is one SQLite file, owned by one writer at a time.

A batch is stored as a line-protocol body (bytes, zlib-compressed) with its timestamp
precision: the blob is ``B``, the precision, a newline, then ``zlib(body)``. Files written before
bodies were bytes hold a zlib-compressed JSON list of lines in nanoseconds (a zlib
stream never starts with ``B``); they are still read, so a spill left by an older
version drains after an upgrade.

Durability: SQLite in WAL mode with ``synchronous=FULL``: :meth:`SpillBuffer.append`
returns only after the batch is committed and the WAL fsynced. A crash or a power cut
therefore loses nothing that was appended (provided the disk honours fsync); a batch
whose append had not returned was never acknowledged to the broker, which delivers it
again. The price is one fsync per append, a few milliseconds, paid only while spilling.

Ownership: a writer claims a slot ``<key>-<n>.sqlite`` by taking an exclusive
``flock`` on ``<key>-<n>.lock`` (``key`` names the target database, so two gateways
writing to different databases never mix their spills). At claim time it adopts the
batches of every slot nobody holds, so that a spill left by a crash is drained by the
next run even if it runs fewer writers.

Budget: ``max_bytes`` counts the stored (zlib-compressed) batches, which is close to
what the spill costs on disk; SQLite's page slack and WAL come on top. A batch is
refused when it would exceed the budget, unless the buffer is empty (a single batch
larger than the budget would otherwise never fit).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import sqlite3
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from contract.errors import StorageError
from gateway.statedir import private_dir

__all__ = ["PackedBatch", "SpillBuffer", "SpilledBatch", "split_lines"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    points INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    body BLOB NOT NULL
)
"""
_PEEK_ROWS = 256


# One line of line protocol, as influxd's scanner cuts them (models/points.go,
# scanLine): a backslash escapes the next byte anywhere; before the first space (the
# series key) quotes mean nothing; after it, a quoted string field may hold newlines.
_LINE = re.compile(rb'(?:\\.|[^ \n\\])*(?: (?:\\.|"(?:\\.|[^"\\])*"|[^"\n\\])*)?', re.DOTALL)


def split_lines(body: bytes) -> list[bytes]:
    """Cut a body into its lines (no newline kept), as influxd does.

    A plain split on newlines, unless the body holds quotes or backslashes: then a
    scanner that keeps a newline inside a quoted string field in its line. Meant for
    the rare paths (isolating refused points), not for every write.
    """
    if b'"' not in body and b"\\" not in body:
        return [line for line in body.split(b"\n") if line]
    lines: list[bytes] = []
    pos, end = 0, len(body)
    while pos < end:
        match = _LINE.match(body, pos)
        stop = match.end() if match else pos
        if stop < end and body[stop] != 0x0A:  # malformed (an open quote): cut at the newline
            newline = body.find(b"\n", stop)
            stop = end if newline < 0 else newline
        if stop > pos:
            lines.append(body[pos:stop])
        pos = stop + 1
    return lines


def _header(precision: str) -> bytes:
    return b"B" + precision.encode("ascii") + b"\n"


@dataclass(frozen=True, slots=True)
class PackedBatch:
    """A body encoded for the spill: compressed once, appended possibly after a wait."""

    body: bytes
    """The stored blob (header and compressed body)."""
    points: int

    @classmethod
    def pack(cls, lines: Sequence[str]) -> PackedBatch:
        """Encode ``lines`` (nanosecond timestamps)."""
        body = ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
        return cls.pack_body(body, len(lines), "ns")

    @classmethod
    def pack_body(cls, body: bytes, points: int, precision: str = "ns") -> PackedBatch:
        """Encode a body of ``points`` newline-terminated lines in ``precision``."""
        return cls(_header(precision) + zlib.compress(body, 1), points)

    @property
    def size(self) -> int:
        """Stored bytes, as counted against the budget."""
        return len(self.body)


def _unpack(blob: bytes) -> tuple[str, bytes]:
    """Return the precision and the body of a stored blob (either format)."""
    if blob[:1] == b"B":
        header, _, compressed = blob.partition(b"\n")
        return header[1:].decode("ascii"), zlib.decompress(compressed)
    lines = json.loads(zlib.decompress(blob))  # the format before bodies were bytes
    return "ns", ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def _precision_of(blob: bytes) -> str:
    return blob[1 : blob.index(b"\n")].decode("ascii") if blob[:1] == b"B" else "ns"


@dataclass(frozen=True, slots=True)
class SpilledBatch:
    """The oldest spilled rows of one precision, coalesced into one body."""

    ids: tuple[int, ...]
    body: bytes
    points: int
    size: int
    precision: str = "ns"

    @property
    def lines(self) -> list[str]:
        """The lines of the body, decoded (for tests and the rare bisect path)."""
        return [line.decode("utf-8") for line in split_lines(self.body)]


def _lock(path: Path) -> int | None:
    """Take an exclusive lock on ``path``; return its descriptor, or None if held."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        # The holder may have removed the file between our open and our lock: then we
        # hold a lock on a dead inode, and must lock the file now at that path instead.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _remove_db(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{db}{suffix}")


class SpillBuffer:
    """A durable FIFO of line-protocol bodies in one SQLite file, bounded in bytes.

    Thread-safe: the writer appends from the sink's thread while its drainer peeks and
    removes from another.
    """

    def __init__(self, path: Path, *, max_bytes: int, lock_fd: int | None = None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock_fd = lock_fd
        self._mutex = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the spill buffer {path}: {exc}") from exc
        self._recount()

    @classmethod
    def claim(cls, directory: Path, key: str, *, max_bytes: int) -> SpillBuffer:
        """Claim the first free slot for ``key`` in ``directory`` and adopt orphans."""
        private_dir(directory, "influx.spill_dir")
        try:
            slot = 0
            while (fd := _lock(directory / f"{key}-{slot}.lock")) is None:
                slot += 1
        except OSError as exc:
            raise StorageError(f"cannot claim a spill buffer in {directory}: {exc}") from exc
        buffer = cls(directory / f"{key}-{slot}.sqlite", max_bytes=max_bytes, lock_fd=fd)
        buffer._adopt_orphans(directory, key)
        return buffer

    def _recount(self) -> None:
        row = self._db.execute(
            "SELECT count(*), coalesce(sum(bytes), 0), coalesce(sum(points), 0) FROM batch"
        ).fetchone()
        self._batches, self._bytes, self._points = int(row[0]), int(row[1]), int(row[2])

    def _adopt_orphans(self, directory: Path, key: str) -> None:
        for lock_path in sorted(directory.glob(f"{key}-*.lock")):
            db = lock_path.with_suffix(".sqlite")
            if db == self.path:
                continue
            fd = _lock(lock_path)
            if fd is None:
                continue  # a live writer holds it
            try:
                if db.exists():
                    moved = self._adopt(db)
                    if moved:
                        log.warning("adopted %d spilled batches from %s", moved, db)
                    _remove_db(db)
                    lock_path.unlink()
            except (OSError, sqlite3.Error) as exc:
                log.error("cannot adopt the spill buffer %s, leaving it: %s", db, exc)
            finally:
                os.close(fd)

    def _adopt(self, db: Path) -> int:
        with self._mutex:
            self._db.execute("ATTACH DATABASE ? AS orphan", (str(db),))
            try:
                tables = self._db.execute(
                    "SELECT count(*) FROM orphan.sqlite_master WHERE name = 'batch'"
                ).fetchone()[0]
                if not tables:
                    return 0
                self._db.execute("BEGIN IMMEDIATE")
                moved = self._db.execute(
                    "INSERT INTO main.batch (points, bytes, body)"
                    " SELECT points, bytes, body FROM orphan.batch ORDER BY id"
                ).rowcount
                self._db.execute("DELETE FROM orphan.batch")
                self._db.execute("COMMIT")
            finally:
                self._db.execute("DETACH DATABASE orphan")
            self._recount()
            return int(moved)

    @property
    def bytes(self) -> int:
        """Stored bytes of the spilled batches."""
        return self._bytes

    @property
    def batches(self) -> int:
        """Number of spilled batches (as appended, before coalescing)."""
        return self._batches

    @property
    def points(self) -> int:
        """Number of spilled lines."""
        return self._points

    def __len__(self) -> int:
        return self._batches

    def fits(self, batch: PackedBatch) -> bool:
        """Whether ``batch`` can be appended without exceeding the budget."""
        return self._batches == 0 or self._bytes + batch.size <= self.max_bytes

    def append(self, batch: PackedBatch, *, force: bool = False) -> None:
        """Append ``batch`` durably (committed and fsynced when this returns).

        Raises :class:`StorageError` when it does not fit, unless ``force``.
        """
        if not force and not self.fits(batch):
            raise StorageError(
                f"spill buffer {self.path} full ({self._bytes} of {self.max_bytes} bytes)"
            )
        with self._mutex:
            try:
                self._db.execute(
                    "INSERT INTO batch (points, bytes, body) VALUES (?, ?, ?)",
                    (batch.points, batch.size, batch.body),
                )
            except sqlite3.Error as exc:
                raise StorageError(f"cannot append to the spill buffer {self.path}: {exc}") from exc
            self._batches += 1
            self._bytes += batch.size
            self._points += batch.points

    def peek(self, max_points: int) -> SpilledBatch | None:
        """Return the oldest rows of one precision, coalesced up to ``max_points`` lines.

        At least one row, however large.
        """
        with self._mutex:
            try:
                rows = self._db.execute(
                    "SELECT id, points, bytes, body FROM batch ORDER BY id LIMIT ?", (_PEEK_ROWS,)
                ).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"cannot read the spill buffer {self.path}: {exc}") from exc
        ids: list[int] = []
        bodies: list[bytes] = []
        points = size = 0
        precision = "ns"
        for row_id, row_points, nbytes, blob in rows:
            row_precision = _precision_of(blob)
            if ids and (points + row_points > max_points or row_precision != precision):
                break
            try:
                precision, body = _unpack(blob)
            except (zlib.error, ValueError) as exc:
                raise StorageError(
                    f"spill buffer {self.path}: row {row_id} is corrupt: {exc}"
                ) from exc
            ids.append(row_id)
            bodies.append(body)
            points += row_points
            size += nbytes
        if not ids:
            return None
        return SpilledBatch(tuple(ids), b"".join(bodies), points, size, precision)

    def remove(self, batch: SpilledBatch) -> None:
        """Remove the rows of ``batch`` (once they are stored in InfluxDB)."""
        with self._mutex:
            try:
                self._db.execute(
                    f"DELETE FROM batch WHERE id IN ({','.join('?' * len(batch.ids))})",
                    batch.ids,
                )
                self._batches -= len(batch.ids)
                self._bytes -= batch.size
                self._points -= batch.points
                if self._batches == 0:
                    # Give the disk back once the outage is over.
                    self._db.execute("PRAGMA incremental_vacuum")
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise StorageError(f"cannot update the spill buffer {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the file; remove it if empty, keep it (to drain next time) otherwise."""
        with self._mutex:
            empty = self._batches == 0
            self._db.close()
            if empty:
                _remove_db(self.path)
            if self._lock_fd is not None:
                if empty:
                    with contextlib.suppress(FileNotFoundError):
                        self.path.with_suffix(".lock").unlink()
                os.close(self._lock_fd)
                self._lock_fd = None
