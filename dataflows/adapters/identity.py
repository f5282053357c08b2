"""Idempotency for foreign messages: a synthesised per-device sequence and event id.

Foreign devices number nothing the way SensorGate's edge agent does, yet the gateway
deduplicates on a per-device sequence kept as an interval set, restored after a restart.
So the sequence is *derived from the message*, never counted:

    sequence = (time_ms << 20) | low_20_bits

* ``time_ms`` is the message's own time when the payload carries one (Tasmota ``Time``,
  Shelly ``ts``, Sparkplug ``timestamp``, Telegraf line time, Zigbee2MQTT
  ``last_seen``), else the gateway's arrival time.
* the low 20 bits are Sparkplug's ``bdSeq`` (12 bits) and ``seq`` (8 bits) where the
  family has them, else 20 bits of a CRC-32 of topic, payload and device.

What follows:

* monotonic with time per device, so the interval set stays ordered (each message is
  its own interval; the set remembers the newest ``dedupe_intervals`` messages);
* no state: a restarted gateway computes the same numbers, so a counter restarting at 0
  cannot collide with restored dedupe state;
* a redelivered message whose payload carries its time gets the same sequence and is
  dropped as a duplicate; one timed by arrival gets a new sequence and counts again
  (documented in docs/adapters.md: at QoS 0, which most of these devices use, the broker
  never redelivers);
* two *different* messages of one device in the same millisecond collide only if their
  20 hashed bits are equal (one in a million): the second is then taken for a duplicate.

``time_ms`` fits until the year 2248 (``(2**43 - 1) << 20 < 2**63``).
"""

from __future__ import annotations

import hashlib
import uuid
import zlib

__all__ = ["LOW_BITS", "event_id", "hashed_low_bits", "sequence_of"]

LOW_BITS = 20
_LOW_MASK = (1 << LOW_BITS) - 1
_MAX_MS = (1 << (63 - LOW_BITS)) - 1


def hashed_low_bits(topic: str, payload: bytes, device: str = "") -> int:
    """Return 20 bits of a CRC-32 over topic, payload and device (C speed)."""
    crc = zlib.crc32(payload, zlib.crc32(f"{topic}\0{device}\0".encode("utf-8", "surrogatepass")))
    return crc & _LOW_MASK


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
    ).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))
