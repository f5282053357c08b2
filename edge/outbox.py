"""The durable outbox: every telemetry event is stored here before it is sent.

One SQLite database in WAL mode. An event is inserted (and, with ``durability =
"full"``, fsynced) before the publisher may send it, and deleted only once the
broker's PUBACK arrived. The publisher reads oldest first. A budget in events and
in payload bytes bounds the file: beyond it the oldest events are deleted and
counted (``dropped_total`` survives restarts).

Sequences: :meth:`Outbox.append` reads a device's next ``sequence`` from the
``meta`` table, inserts the event carrying it and stores the incremented counter in
*one* transaction (one fsync with ``durability = "full"``). A crash or power cut
therefore commits both or neither: a number is never handed out twice and never
skipped, so the sequences a device delivers have no gap except the events the disk
budget dropped (counted in ``dropped_total``). Deletes use ``synchronous=NORMAL``:
losing a delete in a power cut only re-sends an event the broker already has (the
gateway dedupes on ``(device, sequence)``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from contract.errors import StorageError

__all__ = ["Outbox", "OutboxItem", "OutboxStats"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    device TEXT,
    sequence INTEGER,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS identity (id TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One stored event."""

    id: int
    topic: str
    payload: bytes
    sequence: int | None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """What is in the outbox right now, and what it had to drop."""

    depth: int
    bytes: int
    dropped_total: int
    stored_total: int
    acked_total: int


class Outbox:
    """A SQLite-backed FIFO of encoded events, safe to use from two threads."""

    def __init__(
        self,
        path: Path | str,
        *,
        max_events: int = 200_000,
        max_bytes: int = 256 * 1024 * 1024,
        durability: Literal["full", "normal"] = "full",
    ) -> None:
        self.path = Path(path)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.durability = durability
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            self._sync: str | None = None
            self._set_sync("FULL")
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox")
            self._depth, self._bytes = row.fetchone()
            self._dropped = self._meta("dropped_total")
            self.id = self._identity()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the outbox {self.path}: {exc}") from exc
        self._stored = 0
        self._acked = 0
        self._seq_checked: set[str] = set()

    # -- internals -------------------------------------------------------------------
    def _identity(self) -> str:
        """Return this store's id, made once when the store is created.

        (Or first opened by a version that has ids.) Telemetry carries it so that the
        gateway's dedupe tells a recreated outbox, whose sequences start again at 0,
        from redeliveries.
        """
        row = self._db.execute("SELECT id FROM identity").fetchone()
        if row:
            return str(row[0])
        made = uuid.uuid4().hex
        self._db.execute("INSERT INTO identity(id) VALUES (?)", (made,))
        return made

    def _set_sync(self, mode: str) -> None:
        if self._sync != mode:
            self._db.execute(f"PRAGMA synchronous={mode}")
            self._sync = mode

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- sequences -------------------------------------------------------------------
    def _next_sequence_in_tx(self, device: str) -> int:
        """Return the next sequence of ``device``; call inside the storing transaction."""
        seq = self._meta(f"seq:{device}")
        if device not in self._seq_checked:
            # Once per process: rows stored by an older version, or a counter that went
            # missing, must not be numbered again. (Also a database written by the
            # block-reserving version: its counter is the end of the last block, so an
            # upgrade skips the rest of that block once.)
            row = self._db.execute(
                "SELECT MAX(sequence) FROM outbox WHERE device = ?", (device,)
            ).fetchone()
            if row and row[0] is not None:
                seq = max(seq, int(row[0]) + 1)
        return seq

    def next_sequence(self, device: str) -> int:
        """Return the sequence the next :meth:`append` for ``device`` will use."""
        with self._lock:
            try:
                return self._next_sequence_in_tx(device)
            except sqlite3.Error as exc:
                raise StorageError(f"cannot read the sequence in {self.path}: {exc}") from exc

    def append(self, topic: str, device: str, encode: Callable[[int], bytes]) -> tuple[int, int]:
        """Give one event of ``device`` its sequence and store it, atomically.

        ``encode(sequence)`` builds the payload carrying the sequence. The counter is
        read, the event inserted and the counter advanced in one transaction, so a
        crash keeps both or neither. Returns ``(sequence, dropped)``: the number used
        and how many old events the budget pushed out.
        """
        with self._lock:
            try:
                self._set_sync("FULL" if self.durability == "full" else "NORMAL")
                self._db.execute("BEGIN IMMEDIATE")
                seq = self._next_sequence_in_tx(device)
                payload = encode(seq)
                dropped, depth, size = self._insert(topic, payload, device, seq)
                self._set_meta(f"seq:{device}", seq + 1)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StorageError(f"cannot store an event in {self.path}: {exc}") from exc
            except BaseException:
                self._rollback()  # the encoder failed: nothing numbered, nothing stored
                raise
            self._seq_checked.add(device)
            self._stored_one(depth, size, dropped)
            return seq, dropped

    # -- store, read, acknowledge ------------------------------------------------------
    def put(
        self,
        topic: str,
        payload: bytes,
        *,
        device: str | None = None,
        sequence: int | None = None,
    ) -> int:
        """Store one event durably; return how many old events the budget pushed out.

        Telemetry should use :meth:`append`, which numbers the event in the same
        transaction; ``put`` stores whatever ``sequence`` it is given.
        """
        with self._lock:
            try:
                self._set_sync("FULL" if self.durability == "full" else "NORMAL")
                self._db.execute("BEGIN IMMEDIATE")
                dropped, depth, size = self._insert(topic, payload, device, sequence)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StorageError(f"cannot store an event in {self.path}: {exc}") from exc
            self._stored_one(depth, size, dropped)
            return dropped

    def _insert(
        self, topic: str, payload: bytes, device: str | None, sequence: int | None
    ) -> tuple[int, int, int]:
        """Insert inside the caller's transaction; apply the budget. -> (dropped, depth, size)."""
        self._db.execute(
            "INSERT INTO outbox(topic, payload, device, sequence, created) VALUES (?, ?, ?, ?, ?)",
            (topic, payload, device, sequence, time.time()),
        )
        depth, size = self._depth + 1, self._bytes + len(payload)
        dropped = 0
        if depth > self.max_events or size > self.max_bytes:
            dropped, freed = self._drop_oldest(depth, size)
            depth, size = depth - dropped, size - freed
            self._set_meta("dropped_total", self._dropped + dropped)
        return dropped, depth, size

    def _stored_one(self, depth: int, size: int, dropped: int) -> None:
        """Update the counters after a committed insert (lock held)."""
        self._depth, self._bytes = depth, size
        self._dropped += dropped
        self._stored += 1

    def _drop_oldest(self, depth: int, size: int) -> tuple[int, int]:
        dropped = freed = 0
        # Walk the oldest rows in chunks until both budgets hold again.
        while depth - dropped > self.max_events or size - freed > self.max_bytes:
            need = max(1, depth - dropped - self.max_events)
            rows = self._db.execute(
                "SELECT id, LENGTH(payload) FROM outbox ORDER BY id LIMIT ?", (max(need, 64),)
            ).fetchall()
            if not rows:
                break
            victims = []
            for row_id, length in rows:
                if depth - dropped <= self.max_events and size - freed <= self.max_bytes:
                    break
                if depth - dropped == 1:
                    break  # never drop the event just stored: it is the newest reading
                victims.append(row_id)
                dropped += 1
                freed += length
            if not victims:
                break
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(v,) for v in victims])
        return dropped, freed

    def peek(self, *, after_id: int = 0, limit: int = 100) -> list[OutboxItem]:
        """Return up to ``limit`` events with ids above ``after_id``, oldest first."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT id, topic, payload, sequence FROM outbox WHERE id > ?"
                    " ORDER BY id LIMIT ?",
                    (after_id, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"cannot read the outbox {self.path}: {exc}") from exc
        return [OutboxItem(r[0], r[1], bytes(r[2]), r[3]) for r in rows]

    def ack(self, ids: list[int]) -> None:
        """Delete the events the broker acknowledged."""
        if not ids:
            return
        with self._lock:
            try:
                self._set_sync("NORMAL")
                self._db.execute("BEGIN IMMEDIATE")
                freed = 0
                gone = 0
                for row_id in ids:
                    row = self._db.execute(
                        "DELETE FROM outbox WHERE id = ? RETURNING LENGTH(payload)", (row_id,)
                    ).fetchone()
                    if row is not None:  # it may have been dropped by the budget meanwhile
                        gone += 1
                        freed += row[0]
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StorageError(f"cannot delete acknowledged events: {exc}") from exc
            self._depth -= gone
            self._bytes -= freed
            self._acked += gone

    def stats(self) -> OutboxStats:
        """Counters for the status and the logs (no disk access)."""
        with self._lock:
            return OutboxStats(self._depth, self._bytes, self._dropped, self._stored, self._acked)

    @property
    def depth(self) -> int:
        """Events waiting for a PUBACK."""
        return int(self._depth)

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def close(self) -> None:
        """Checkpoint the WAL into the database and close it."""
        with self._lock:
            # Closing anyway if this fails: the WAL is replayed at the next open.
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
