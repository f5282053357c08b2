"""Batches of raw MQTT messages, and the shard that owns each message's device.

The MQTT source hands the flow one :class:`MessageBatch` per poll: topics, payloads and
arrival times as parallel lists, so a thousand messages are one item, not a thousand.
The flow splits each batch by *shard* (:func:`shard_of`: a stable hash of the device
named by the topic into ``shards`` buckets) before anything is decoded, so raw bytes
are what crosses workers and processes, and each device's messages are decoded once,
where its state lives. The number of shards is fixed for the life of a recovery store:
it decides which state holds which device.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["MessageBatch", "ShardRouter", "shard_key"]


def _native_device_part(topic: str) -> str:
    """``{prefix}/{site}/{device}`` of a SensorGate topic (everything before the kind)."""
    return topic.rpartition("/")[0] or topic


def shard_key(index: int) -> str:
    """Return the Bytewax state key of shard ``index`` (zero-padded, so keys sort)."""
    return f"shard-{index:03d}"


@dataclass(slots=True)
class MessageBatch:
    """Messages as they came off the broker, as parallel lists.

    ``received_us`` is the gateway's arrival time of each message, in microseconds
    since the Unix epoch (UTC).
    """

    topics: list[str] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    received_us: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.topics)

    def append(self, topic: str, payload: bytes, received_us: int) -> None:
        """Add one message."""
        self.topics.append(topic)
        self.payloads.append(payload)
        self.received_us.append(received_us)

    def extend(self, other: MessageBatch) -> None:
        """Add every message of ``other``, in order."""
        self.topics.extend(other.topics)
        self.payloads.extend(other.payloads)
        self.received_us.extend(other.received_us)


class ShardRouter:
    """Splits message batches by the shard of each message's device.

    The device is read from the topic alone (``.../{site}/{device}/{kind}``: the
    levels before the last), so routing decodes nothing. A topic that does not have
    that shape still goes to some shard, where it becomes a dead letter.
    """

    _CACHE_MAX = 1_000_000

    def __init__(self, shards: int, device_part: Callable[[str], str] | None = None) -> None:
        if shards < 1:
            raise ValueError(f"shards must be at least 1; got {shards}")
        self.shards = shards
        self._device_part = device_part or _native_device_part
        """Topic -> the part that names its device (adapters: their routing key)."""
        self._keys = [shard_key(i) for i in range(shards)]
        self._cache: dict[str, str] = {}

    def key_of(self, topic: str) -> str:
        """Return the shard key of the device that ``topic`` belongs to."""
        key = self._cache.get(topic)
        if key is None:
            device_part = self._device_part(topic)
            key = self._keys[zlib.crc32(device_part.encode("utf-8", "surrogatepass")) % self.shards]
            if len(self._cache) >= self._CACHE_MAX:  # bounded: topics are not trusted
                self._cache.clear()
            self._cache[topic] = key
        return key

    def split(self, batch: MessageBatch) -> list[tuple[str, MessageBatch]]:
        """Return ``(shard key, messages of that shard)`` pairs, message order kept."""
        if self.shards == 1:
            return [(self._keys[0], batch)]
        parts: dict[str, MessageBatch] = {}
        key_of = self.key_of
        for topic, payload, received in zip(
            batch.topics, batch.payloads, batch.received_us, strict=True
        ):
            key = key_of(topic)
            part = parts.get(key)
            if part is None:
                part = parts[key] = MessageBatch()
            part.topics.append(topic)
            part.payloads.append(payload)
            part.received_us.append(received)
        return list(parts.items())
