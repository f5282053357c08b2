"""Idempotency for foreign messages: a synthesised per-device sequence and event id.

Foreign devices number nothing the way SensorGate's edge agent does, yet the gateway
deduplicates on a per-device sequence kept as an interval set, restored after a restart.
So the sequence is *derived from the message*, never counted:

    sequence = (time_ms << 20) | low_20_bits

* ``time_ms`` is the message's own time when the payload carries one (Tasmota ``Time``,
  Shelly ``ts``, Sparkplug ``timestamp``, Telegraf line time, Zigbee2MQTT
  ``last_seen``), else the gateway's arrival time.
* the low 20 bits are Sparkplug's ``bdSeq`` (12 bits) and ``seq`` (8 bits) where the
  family has them; for a message timed by its payload, 20 bits of a CRC-32 of topic,
  payload and device; for a message timed by its *arrival* (no time of its own), the
  arrival's microseconds within its millisecond (10 bits) and 10 hashed bits
  (:func:`arrival_low_bits`).

What follows:

* monotonic with time per device, so the interval set stays ordered (each message is
  its own interval; the set remembers the newest ``dedupe_intervals`` messages);
* no state: a restarted gateway computes the same numbers, so a counter restarting at 0
  cannot collide with restored dedupe state;
* a redelivered message whose payload carries its time gets the same sequence and is
  dropped as a duplicate. One timed by arrival gets the same sequence only if it gets
  the same arrival time: the gateway's MQTT source stamps a redelivery (``DUP``, same
  packet id and content) with its first delivery's time
  (:mod:`gateway.connectors.delivery_stamps`, which says where that is exact);
* arrival times are unique: the source stamps every message with a microsecond no other
  message of the gateway got (strictly increasing per partition, each partition on its
  own residue modulo a power of two). So two messages timed by arrival never share a
  sequence: it is injective in the stamp, by construction;
* two *different* messages of one device timed by their payload in the same
  millisecond collide only if their 20 hashed bits are equal (one in a million): the
  second is then taken for a duplicate.

``time_ms`` fits until the year 2248 (``(2**43 - 1) << 20 < 2**63``).
"""

from __future__ import annotations

import hashlib
import zlib

__all__ = ["LOW_BITS", "arrival_low_bits", "event_id", "hashed_low_bits", "sequence_of"]

LOW_BITS = 20
_LOW_MASK = (1 << LOW_BITS) - 1
_MAX_MS = (1 << (63 - LOW_BITS)) - 1
_HASH_BITS = 10  # below the 10 bits of microseconds (0-999) in arrival_low_bits
_HASH_MASK = (1 << _HASH_BITS) - 1


def hashed_low_bits(topic: str, payload: bytes, device: str = "") -> int:
    """Return 20 bits of a CRC-32 over topic, payload and device (C speed)."""
    crc = zlib.crc32(payload, zlib.crc32(f"{topic}\0{device}\0".encode("utf-8", "surrogatepass")))
    return crc & _LOW_MASK


def arrival_low_bits(time_us: int, topic: str, payload: bytes, device: str = "") -> int:
    """Return the low bits of a message timed by its arrival at ``time_us``.

    The microseconds within the millisecond (the high 10 of the 20 bits) make the
    sequence injective in the arrival stamp, which the source keeps unique; 10 hashed
    bits below them keep messages apart where stamps are not unique (a replay, a test
    that gives a whole batch one arrival time).
    """
    crc = zlib.crc32(payload, zlib.crc32(f"{topic}\0{device}\0".encode("utf-8", "surrogatepass")))
    return ((time_us % 1000) << _HASH_BITS) | (crc & _HASH_MASK)


def sequence_of(time_us: int, low: int) -> int:
    """Return the synthesised sequence of a message at ``time_us`` with ``low`` bits."""
    ms = time_us // 1000
    ms = 0 if ms < 0 else min(ms, _MAX_MS)
    return (ms << LOW_BITS) | (low & _LOW_MASK)


def event_id(adapter: str, topic: str, device: str, sequence: int, payload: bytes) -> str:
    """Return a deterministic UUID (version 5 layout, SHA-1) for one device's event.

    Same adapter, topic, device, sequence and payload: same id, so alarms raised by a
    redelivered message name the same cause.
    """
    digest = hashlib.sha1(  # an id, not a security hash
        f"{adapter}\0{topic}\0{device}\0{sequence}\0".encode("utf-8", "surrogatepass") + payload
    ).hexdigest()
    # uuid.UUID(bytes=digest[:16], version=5), formatted without the object (per message)
    variant = "89ab"[int(digest[16], 16) & 3]
    return f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-{variant}{digest[17:20]}-{digest[20:32]}"
