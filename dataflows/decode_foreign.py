"""The adapters' path of the decode stage: foreign messages into the native columns.

Two ways in:

* **Value topics, batched.** A family that publishes one plain number per message
  (Shelly Gen1: ``shellies/<id>/relay/0/power``) says once per topic what every value
  on it becomes (:meth:`~dataflows.adapters.base.Adapter.value_topic`: device, sensor,
  metric, unit conversion). A message on such a topic, of a device and series this
  shard already knows, whose payload is a plain ASCII number, is read here in a tight
  loop: no :class:`~dataflows.adapters.result.AdapterResult`, no per-reading objects,
  registry lookups once per topic per batch. It gets exactly what the adapter would
  give it (the same value, sequence and event id; a unit test holds this).
* **Everything else**, message by message through :meth:`AdapterSet.adapt`: each
  ``Telemetry`` joins the same columns after the fast path's time-range check
  (``timestamp_out_of_range``) and the caps (``cardinality``); status changes become
  ``StatusIn`` events, errors dead letters with reason ``adapter_error``, commands go
  to the output, skipped values and ignored messages are counted.

Dedupe, windows, rules and the line protocol writer then treat it all like native
telemetry; units are not stored (the schema has none).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from contract import DeadLetterReason
from dataflows.adapters.adapterset import AdapterSet
from dataflows.adapters.base import ValueTopic
from dataflows.adapters.identity import arrival_low_bits, event_id, sequence_of
from dataflows.adapters.naming import fahrenheit_to_celsius
from dataflows.adapters.result import Telemetry
from dataflows.batch import MessageBatch
from dataflows.decoded import DecodedBatch
from dataflows.eventclock import from_us
from dataflows.ingest import IngestLimits, RawMessage, Rejected, StatusIn
from dataflows.registry import Registry

__all__ = ["ForeignPath"]

_US = 1_000_000
# A plain ASCII number: what the adapters' numeric strings accept, without whitespace.
_NUMBER = re.compile(rb"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SHORT = 64  # longer payloads are not plain numbers worth the fast loop

_Known = tuple[ValueTopic, int, int, str]  # value topic, device, series, adapter name


@dataclass(slots=True)
class _Columns:
    series: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


class ForeignPath:
    """Decodes the messages adapters claim, into a :class:`DecodedBatch`."""

    def __init__(
        self,
        adapters: AdapterSet,
        registry: Registry,
        limits: IngestLimits,
        slow: Callable[[MessageBatch, list[int], DecodedBatch], None],
    ) -> None:
        self.adapters = adapters
        self.registry = registry
        self.limits = limits
        self._slow = slow
        """The native slow path, for a topic no adapter takes after all."""
        self.batched = 0
        """Messages the value-topic loop took (for tests and profiles)."""

    def take(self, batch: MessageBatch, indices: list[int], out: DecodedBatch) -> None:
        """Map the foreign messages ``indices`` of ``batch``; append what they became."""
        cols = _Columns()
        rest = self._values(batch, indices, out, cols)
        for i in rest:
            self._one(batch, i, out, cols)
        out.append_readings(cols.series, cols.times, cols.values)

    # -- value topics, batched ------------------------------------------------------

    def _known(self, topic: str) -> _Known | None:
        adapter = self.adapters.adapter_for(topic)
        if adapter is None:
            return None
        value_topic = adapter.value_topic(topic)
        if value_topic is None:
            return None
        registry = self.registry
        device = registry.find_device(value_topic.site, value_topic.device)
        if device is None:
            return None  # the general path registers it (and applies the caps)
        series = registry.series_by_device[device].get((value_topic.sensor, value_topic.metric))
        if series is None:
            return None
        return value_topic, device, series, adapter.name

    def _values(
        self, batch: MessageBatch, indices: list[int], out: DecodedBatch, cols: _Columns
    ) -> list[int]:
        """Take the plain numbers on known value topics; return the other indices."""
        rest: list[int] = []
        known: dict[str, _Known | None] = {}
        number = _NUMBER.fullmatch
        topics, payloads, received = batch.topics, batch.payloads, batch.received_us
        taken = 0
        for i in indices:
            topic = topics[i]
            hit: _Known | Literal[False] | None = known.get(topic, False)
            if hit is False:
                hit = known[topic] = self._known(topic)
            payload = payloads[i]
            if hit is None or len(payload) > _SHORT or number(payload) is None:
                rest.append(i)
                continue
            value_topic, device, series, adapter = hit
            value = float(payload)
            if value_topic.fahrenheit:
                value = fahrenheit_to_celsius(value)
            value *= value_topic.factor
            if not math.isfinite(value):
                rest.append(i)  # the adapter skips and counts it
                continue
            t = received[i]
            name = value_topic.device
            sequence = sequence_of(t, arrival_low_bits(t, topic, payload, name))
            cols.series.append(series)
            cols.times.append(t)
            cols.values.append(value)
            out.msg_device.append(device)
            out.msg_seq.append(sequence)
            out.msg_outbox.append(None)
            out.msg_own_times.append(False)
            out.msg_received_us.append(t)
            out.msg_event_id.append(event_id(adapter, topic, name, sequence, payload))
            out.msg_traceparent.append(None)
            out.msg_count.append(1)
            taken += 1
        self.batched += taken
        return rest

    # -- everything else, per message -------------------------------------------------

    def _one(self, batch: MessageBatch, i: int, out: DecodedBatch, cols: _Columns) -> None:
        topic, payload, received = batch.topics[i], batch.payloads[i], batch.received_us[i]
        max_bytes = self.limits.max_payload_bytes
        if len(payload) > max_bytes:
            out.rejected.append(
                Rejected(
                    _raw(batch, i),
                    DeadLetterReason.OVERSIZE,
                    f"payload is {len(payload)} bytes; the limit is {max_bytes}",
                )
            )
            return
        result = self.adapters.adapt(topic, payload, received)
        if result is None:  # no adapter after all (cache out of date): native rules
            self._slow(batch, [i], out)
            return
        for error in result.errors:
            out.rejected.append(Rejected(_raw(batch, i), error.reason, error.text))
        out.events.extend(
            StatusIn(change.to_event(), from_us(change.t_us)) for change in result.status
        )
        out.commands.extend(result.commands)
        out.adapter_skipped += result.skipped
        if result.ignored is not None:
            out.adapter_ignored.append(result.ignored)
        for tel in result.telemetry:
            refusal = self._refusal(tel, received)
            if refusal is not None:
                out.rejected.append(Rejected(_raw(batch, i), *refusal))
                continue
            self._telemetry(tel, received, out, cols)

    def _refusal(self, tel: Telemetry, received: int) -> tuple[DeadLetterReason, str] | None:
        """Why ``tel`` cannot be taken: a reading out of the time range, or the caps."""
        past = int(self.limits.max_past.total_seconds() * _US)
        future = int(self.limits.max_future.total_seconds() * _US)
        bad = next((t for t in tel.t_us if not received - past <= t <= received + future), None)
        if bad is not None:
            return (
                DeadLetterReason.TIMESTAMP_OUT_OF_RANGE,
                f"device {tel.device!r}: a reading has time {from_us(bad).isoformat()};"
                f" accepted times are from {from_us(received - past).isoformat()}"
                f" to {from_us(received + future).isoformat()}",
            )
        registry = self.registry
        index = registry.find_device(tel.site, tel.device)
        known = set() if index is None else set(registry.series_by_device[index])
        refusal = registry.refuse_device(tel.site, tel.device) or registry.refuse_series(
            index, len(set(zip(tel.sensor, tel.metric, strict=True)) - known)
        )
        return None if refusal is None else (DeadLetterReason.CARDINALITY, refusal)

    def _telemetry(self, tel: Telemetry, received: int, out: DecodedBatch, cols: _Columns) -> None:
        registry = self.registry
        device = registry.device(tel.site, tel.device)
        known = registry.series_by_device[device]
        count = 0
        for sensor, metric, value, t in zip(
            tel.sensor, tel.metric, tel.value, tel.t_us, strict=True
        ):
            if not math.isfinite(value):  # adapters should not; never store it
                out.adapter_skipped += 1
                continue
            count += 1
            index = known.get((sensor, metric))
            if index is None:
                index = registry.add_series(device, sensor, metric)
            cols.series.append(index)
            cols.times.append(t)
            cols.values.append(value)
        out.msg_device.append(device)
        out.msg_seq.append(tel.sequence)
        out.msg_outbox.append(None)
        out.msg_own_times.append(False)
        out.msg_received_us.append(received)
        out.msg_event_id.append(tel.event_id)
        out.msg_traceparent.append(None)
        out.msg_count.append(count)


def _raw(batch: MessageBatch, i: int) -> RawMessage:
    """Return the raw message a dead letter keeps (built only for one)."""
    return RawMessage(batch.topics[i], batch.payloads[i], from_us(batch.received_us[i]))
