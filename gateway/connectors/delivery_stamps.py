"""Arrival stamps of one MQTT source partition: unique, and the same for a redelivery.

A foreign message without a time of its own (Shelly Gen1 values, Home Assistant
states...) is dated by its arrival, and its synthesised sequence is derived from that
date (:mod:`dataflows.adapters.identity`). Two things follow for the stamp:

* **Unique.** Every stamp of a partition is strictly greater than the one before, and
  lies on the partition's own residue modulo ``step`` (a power of two no smaller than
  the partition count), so no two messages of the whole gateway share a stamp: two
  values of one device in the same millisecond get different sequences by construction.
  The stamp is at most ``step - 1`` µs before the clock, or later when messages come
  faster than one per ``step`` µs.
* **The same for a redelivery.** The broker resends an unacknowledged QoS 1 PUBLISH
  with ``DUP`` set and its original packet id. A ``DUP`` message whose packet id and
  content (CRC-32 of topic and payload) match a delivery this partition stamped gets
  that delivery's stamp again, so the adapter derives the same sequence and event id
  and the shard drops it as a duplicate.

Where it is exact, and where not:

* a reconnection in the same process (a keepalive timeout, a broker restart with
  persistence): every delivery is remembered by packet id and content until it is
  acknowledged, and the last :attr:`DeliveryStamps.ACKED_KEPT` acknowledged ones after
  that, so a resend is matched even when the acknowledgement was lost with the
  connection, and even when the broker reused a packet id while an earlier message
  with it was still unacknowledged;
* a restart after the epoch that took the message was committed, before its
  acknowledgement reached the broker: the stamps of that epoch's messages (and of the
  epoch before, whose acknowledgements were the last to leave) are in the partition's
  snapshot (:meth:`DeliveryStamps.snapshot`) and restored with the flow;
* **not exact**: a restart that loses an epoch in progress (a crash after its points
  were written, before it was committed). Its messages are redelivered with ``DUP``
  but no stamp of theirs survived: they get new stamps, and a timeless reading is
  stored a second time at its new arrival (a message whose payload carries its time
  is still dropped as a duplicate). Counted as :attr:`DeliveryStamps.unmatched`. The
  same for a message acknowledged two epochs or more before the restart whose
  acknowledgement the broker never read (a connection that went dead silently);
* **not exact either**: a ``DUP`` message whose first copy was lost with the
  connection, and whose packet id, topic and payload are byte for byte those of an
  earlier delivery still remembered. It takes the earlier stamp and is dropped as a
  duplicate of it (the same value on the same topic). And a resend of a delivery
  acknowledged more than :attr:`DeliveryStamps.ACKED_KEPT` deliveries before, whose
  acknowledgement never reached the broker, gets a new stamp.
"""

from __future__ import annotations

import time
import zlib
from collections import OrderedDict
from typing import Any

__all__ = ["DeliveryStamps"]


def _crc(topic: str, payload: bytes | bytearray) -> int:
    return zlib.crc32(payload, zlib.crc32(topic.encode("utf-8", "surrogatepass")))


class DeliveryStamps:
    """Stamps the arrivals of one source partition (see the module docstring)."""

    __slots__ = (
        "_acked",
        "_last",
        "_offset",
        "_previous",
        "_step",
        "_unacked",
        "matched",
        "unmatched",
    )

    ACKED_KEPT = 65_536
    """Acknowledged deliveries remembered (their PUBACK may be lost with the link)."""

    def __init__(self, partition: int = 0, partitions: int = 1) -> None:
        self._step = 1 << max(0, partitions - 1).bit_length()
        self._offset = partition % self._step
        self._last = -self._step + self._offset
        # Packet id -> [(crc, stamp)] of deliveries not acknowledged yet, oldest first: a
        # broker may reuse an id while an earlier message with it is still unacknowledged
        # (mosquitto 2.0.11 under a backlog of more than 65,535), so one id can hold
        # several.
        self._unacked: dict[int, list[tuple[int, int]]] = {}
        # (packet id, crc) -> stamp of acknowledged deliveries, oldest first, bounded.
        # An OrderedDict: evicting the oldest of a plain dict rescans its deleted slots.
        self._acked: OrderedDict[tuple[int, int], int] = OrderedDict()
        self._previous: list[list[int]] = []  # the entries of the snapshot before
        self.matched = 0
        """``DUP`` messages given their first delivery's stamp."""
        self.unmatched = 0
        """``DUP`` messages whose first delivery this partition does not know."""

    def stamp(self, mid: int, qos: int, dup: bool, topic: str, payload: bytes | bytearray) -> int:
        """Return the arrival stamp (µs since the epoch) of one message."""
        if qos == 0:
            return self._next()
        crc = _crc(topic, payload)
        if dup:
            known = self._known(mid, crc)
            if known is not None:
                self.matched += 1
                self._unacked.setdefault(mid, []).append((crc, known))
                return known
            self.unmatched += 1
        stamp = self._next()
        self._unacked.setdefault(mid, []).append((crc, stamp))
        return stamp

    def _known(self, mid: int, crc: int) -> int | None:
        for known_crc, stamp in self._unacked.get(mid, ()):
            if known_crc == crc:
                return stamp
        return self._acked.get((mid, crc))

    def acked(self, mid: int) -> None:
        """Record that the oldest delivery with packet id ``mid`` was acknowledged."""
        pending = self._unacked.get(mid)
        if not pending:
            return
        crc, stamp = pending.pop(0)
        if not pending:
            del self._unacked[mid]
        acked = self._acked
        acked[(mid, crc)] = stamp
        acked.move_to_end((mid, crc))  # newest last
        if len(acked) > self.ACKED_KEPT:
            acked.popitem(last=False)

    def _next(self) -> int:
        now = time.time_ns() // 1000
        stamp = now - (now - self._offset) % self._step
        if stamp <= self._last:
            stamp = self._last + self._step
        self._last = stamp
        return stamp

    def snapshot(self, mids: list[int]) -> dict[str, Any]:
        """Return the last stamp and the stamps of an epoch's ``mids`` (not yet acked).

        The previous epoch's are kept as well: their acknowledgements left during this
        epoch and may have died with the connection.
        """
        current = [
            [mid, crc, stamp]
            for mid in dict.fromkeys(mids)
            for crc, stamp in self._unacked.get(mid, ())
        ]
        entries = self._previous + current
        self._previous = current
        return {"last": self._last, "mids": entries}

    def restore(self, state: dict[str, Any] | None) -> None:
        """Put back :meth:`snapshot` (a restarted partition): stamps go on after ``last``."""
        if not state:
            return
        last = int(state.get("last", self._last))
        # Keep this partition's residue (the partition count may have changed).
        self._last = max(self._last, last - (last - self._offset) % self._step)
        # Restored deliveries are looked up like acknowledged ones: the new link's
        # first packets are the broker's resends of them.
        for mid, crc, stamp in state.get("mids", ()):
            self._acked[(int(mid), int(crc))] = int(stamp)
