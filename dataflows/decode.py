"""Decode a shard's batch of raw messages into columns, or dead letters.

Two paths, one arbiter, and the adapters' path. The *fast path*
(:mod:`dataflows.decode_fast`) decodes each telemetry payload with a compiled
msgspec decoder into a strict wire shape (no coercions, faults not allowed, finite
values, bounded strings), then checks every reading's time for the whole batch at once
in Arrow (a strict RFC 3339 grammar, then a vectorised parse to integer microseconds)
and its range against the arrival time in numpy. Readings go straight into columns:
a series index (a C-level dict lookup per reading, through ``map``), an int64 time and a
float64 value. No Python code runs per reading.

Anything the fast path does not take (a fault reading, a lax but valid value such as
``"12.5"``, an unusual time format, an invalid payload) goes to the *slow path*: the
contract's pydantic models through :class:`~dataflows.ingest.Ingestor`, exactly as
before. The slow path is the arbiter: it decides acceptance and the dead-letter reason,
so every bad input still becomes the same dead letter. The fast path only ever accepts
a subset of what the slow path accepts, with identical values (a property test holds
this). Status and command messages (rare) always take the slow path. Messages an
adapter claims (foreign dialects) take :mod:`dataflows.decode_foreign` into the same
columns (:class:`~dataflows.decoded.DecodedBatch`).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from contract import DeadLetterReason, TopicError, TopicKind, TopicScheme
from dataflows.adapters.adapterset import AdapterSet
from dataflows.batch import MessageBatch
from dataflows.decode_fast import (
    READING_KEY,
    READING_TIME,
    READING_VALUE,
    TRACEPARENT,
    FastCandidates,
    FastPath,
    TelemetryWire,
)
from dataflows.decode_foreign import ForeignPath
from dataflows.decoded import DecodedBatch
from dataflows.eventclock import from_us, to_us
from dataflows.ingest import (
    Accepted,
    CommandIn,
    IngestLimits,
    Ingestor,
    RawMessage,
    Rejected,
    StatusIn,
)
from dataflows.registry import Registry

__all__ = ["BatchDecoder", "DecodedBatch"]


class BatchDecoder:
    """Decodes the batches of one shard against that shard's :class:`Registry`."""

    _TOPIC_CACHE_MAX = 200_000

    def __init__(
        self,
        topics: TopicScheme,
        registry: Registry,
        limits: IngestLimits | None = None,
        adapters: AdapterSet | None = None,
    ) -> None:
        self.topics = topics
        self.adapters = adapters
        """Foreign dialects (Zigbee2MQTT, Tasmota...): this shard's adapters, with their
        state; None when no adapters file is configured."""
        self.registry = registry
        self.limits = limits or IngestLimits()
        self.ingestor = Ingestor(topics, self.limits)
        self._decoder = msgspec.json.Decoder(TelemetryWire)
        self._fast = FastPath(registry, self.limits)
        self._foreign_path = (
            None
            if adapters is None
            else ForeignPath(adapters, registry, self.limits, self._take_slow)
        )
        self._topics: dict[str, tuple[TopicKind, str, str] | None] = {}
        self.fast_messages = 0
        """Telemetry messages the fast path took (for tests and metrics)."""
        self.slow_messages = 0

    def _where(self, topic: str) -> tuple[TopicKind, str, str] | None:
        where: tuple[TopicKind, str, str] | Literal[False] | None
        where = self._topics.get(topic, False)  # False: not cached (None: not ours)
        if where is False:
            try:
                parsed = self.topics.parse(topic)
                where = (parsed.kind, parsed.site, parsed.device)
            except TopicError:
                where = None
            if len(self._topics) >= self._TOPIC_CACHE_MAX:
                self._topics.clear()
            self._topics[topic] = where
        return where

    def is_event(self, topic: str) -> bool:
        """Whether ``topic`` carries status or commands (per-event messages)."""
        where = self._where(topic)
        return where is not None and where[0] in (TopicKind.STATUS, TopicKind.COMMANDS)

    def segments(self, batch: MessageBatch) -> list[MessageBatch]:
        """Split a batch at status and command messages, which must keep their place.

        An acknowledgement that arrived before the reading that clears its alarm must
        be applied before it: runs of telemetry are decoded together, and each status
        or command message is handled on its own, in order.
        """
        kinds = [self.is_event(topic) for topic in batch.topics]
        if not any(kinds):
            return [batch]
        segments: list[MessageBatch] = []
        run = MessageBatch()
        for is_event, topic, payload, received in zip(
            kinds, batch.topics, batch.payloads, batch.received_us, strict=True
        ):
            if is_event:
                if len(run):
                    segments.append(run)
                    run = MessageBatch()
                segments.append(MessageBatch([topic], [payload], [received]))
            else:
                run.append(topic, payload, received)
        if len(run):
            segments.append(run)
        return segments

    def decode(self, batch: MessageBatch) -> DecodedBatch:
        """Decode ``batch``: columns of accepted telemetry, events, dead letters."""
        out = DecodedBatch()
        fast = FastCandidates()
        slow: list[int] = []
        registry = self.registry
        max_bytes = self.limits.max_payload_bytes
        decode = self._decoder.decode
        foreign: list[int] = []
        for i, (topic, payload) in enumerate(zip(batch.topics, batch.payloads, strict=True)):
            where = self._where(topic)
            if where is None and self.adapters is not None and self._foreign(topic):
                foreign.append(i)
                continue
            if where is None or where[0] is not TopicKind.TELEMETRY or len(payload) > max_bytes:
                slow.append(i)  # bad topics, status, commands, oversize: the slow path
                continue
            try:
                wire = decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                # msgspec raises RecursionError on deep nesting ([[[[...): the arbiter
                # files it as a dead letter like any other payload it refuses.
                slow.append(i)
                continue
            data = wire.data
            if (
                data.site != where[1]
                or data.device != where[2]
                or (wire.traceparent is not None and not TRACEPARENT.fullmatch(wire.traceparent))
            ):
                slow.append(i)
                continue
            device = registry.find_device(data.site, data.device)
            if device is None:
                if registry.refuse_device(data.site, data.device) is not None:
                    slow.append(i)  # the slow path files it (cardinality, or worse)
                    continue
                device = registry.device(data.site, data.device)
            readings = data.readings
            known = registry.series_by_device[device]
            fast.index.append(i)
            fast.device.append(device)
            fast.wire.append(wire)
            fast.count.append(len(readings))
            fast.series.extend(map(known.get, map(READING_KEY, readings)))
            fast.values.extend(map(READING_VALUE, readings))
            fast.times.extend(map(READING_TIME, readings))
            fast.times.append(wire.time)  # the envelope's time is checked with the rest
        if fast.index:
            slow.extend(self._fast.take(batch, fast, out))
        self.fast_messages += len(out.msg_device)
        if slow:
            self._take_slow(batch, sorted(slow), out)
        if foreign:
            assert self._foreign_path is not None
            self._foreign_path.take(batch, foreign, out)
        return out

    def _foreign(self, topic: str) -> bool:
        """Whether an adapter takes ``topic`` (cached like the native topics)."""
        assert self.adapters is not None
        return self.adapters.adapter_for(topic) is not None

    def _refusal(self, result: Accepted | StatusIn | CommandIn) -> str | None:
        """Why an accepted message would go past the caps on devices and series."""
        registry = self.registry
        if isinstance(result, CommandIn):
            site, device = result.command.data.site, result.command.data.device
        else:
            site, device = result.event.data.site, result.event.data.device
        refusal = registry.refuse_device(site, device)
        if refusal is not None or not isinstance(result, Accepted):
            return refusal
        index = registry.find_device(site, device)
        keys = {(r.sensor, r.metric) for r in result.event.data.readings}
        if index is not None:
            keys -= registry.series_by_device[index].keys()
        return registry.refuse_series(index, len(keys))

    def _take_slow(self, batch: MessageBatch, indices: list[int], out: DecodedBatch) -> None:
        """Decode ``indices`` with the contract's models; append accepted telemetry."""
        registry = self.registry
        series: list[int] = []
        times: list[int] = []
        values: list[float] = []
        base = len(out.series)
        accepted = 0
        for i in indices:
            msg = RawMessage(batch.topics[i], batch.payloads[i], from_us(batch.received_us[i]))
            result = self.ingestor.accept(msg)
            if isinstance(result, Rejected):
                out.rejected.append(result)
                continue
            refusal = self._refusal(result)
            if refusal is not None:
                out.rejected.append(Rejected(msg, DeadLetterReason.CARDINALITY, refusal))
                continue
            if not isinstance(result, Accepted):
                out.events.append(result)
                continue
            accepted += 1
            data = result.event.data
            device = registry.device(data.site, data.device)
            known = registry.series_by_device[device]
            for reading in data.readings:
                index = known.get((reading.sensor, reading.metric))
                if index is None:
                    index = registry.add_series(device, reading.sensor, reading.metric)
                if reading.value is None:
                    out.faults[base + len(series)] = reading.fault or ""
                    values.append(float("nan"))
                else:
                    values.append(float(reading.value))
                series.append(index)
                times.append(to_us(reading.time))
            out.msg_device.append(device)
            out.msg_seq.append(data.sequence)
            out.msg_outbox.append(data.outbox)
            out.msg_own_times.append(True)
            out.msg_received_us.append(batch.received_us[i])
            out.msg_event_id.append(result.event.id)
            out.msg_traceparent.append(result.event.traceparent)
            out.msg_count.append(len(data.readings))
        self.slow_messages += accepted
        out.append_readings(series, times, values)
