"""The gateway dataflow builder: the only module that imports Bytewax.

The builder takes its source and sinks as arguments, so tests run it with Bytewax's
``TestingSource``/``TestingSink`` and production with MQTT and InfluxDB::

    MQTT source: one MessageBatch per poll (raw bytes)
        ─▶ split by shard (stable hash of the device in the topic)     [exchange: raw bytes]
        ─▶ shard step (stateful_batch, keyed by shard): ShardProcessor
              ├─▶ points (encoded line protocol, or columns)  ─▶ points sink (keyed)
              ├─▶ alarm events + active summaries            ─▶ alarm sink
              ├─▶ dead letters                               ─▶ dead-letter sink
              ├─▶ site readings (only with site patterns)    ─▶ site step ─▶ alarm sink
              └─▶ announcements (only with an announce sink) ─▶ announce sink

State is keyed by shard, not by device: the number of Bytewax keys (and of snapshots,
timers and logic objects) does not grow with the fleet. An exception in a shard's
logic does not stop the flow: the batch is retried message by message, and the
message that still fails becomes a ``decode_error`` dead letter (counted).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bytewax import operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import FixedPartitionedSink, Sink

from contract import DeadLetterEvent, DeadLetterReason, TopicScheme
from contract.alarms import ALARM_EVENT_TYPES, AlarmEvent
from dataflows import snapshot_blob
from dataflows.adapters.adapterset import AdapterSet
from dataflows.adapters.config import AdaptersConfig
from dataflows.adapters.result import Command
from dataflows.batch import MessageBatch, ShardRouter
from dataflows.columns import EncodedPoints, PointColumns, PointEncoder
from dataflows.config import StreamConfig
from dataflows.detection import SiteDetector
from dataflows.eventclock import Clock, FleetClock, SystemClock
from dataflows.ingest import IngestLimits, RawMessage, Rejected
from dataflows.observer import NullObserver, Observer
from dataflows.rules import RuleSet, RulesSource, StaticRules
from dataflows.shard import ShardProcessor
from dataflows.shard_output import Announcement, ShardOutput, SiteReadings
from dataflows.summaries import ActiveAlarms, ActiveSummaries

__all__ = [
    "ActiveAlarms",
    "AlarmOutput",
    "Announcement",
    "PointsOutput",
    "RulesSource",
    "StaticRules",
    "build_flow",
]

log = logging.getLogger(__name__)

AlarmOutput = AlarmEvent | ActiveAlarms
"""What the alarm sink receives."""

PointsOutput = EncodedPoints | PointColumns
"""What the points sink receives (keyed by shard when the sink is keyed)."""

ErrorHook = Callable[[str], None]


ShardState = bytes | dict[str, Any] | None
"""What a shard's logic hands Bytewax to store: a :mod:`~dataflows.snapshot_blob` (a
plain-data dict in snapshots from before the blobs, which still restore)."""


class _ShardLogic(StatefulBatchLogic[MessageBatch, Any, ShardState]):
    """Bytewax's side of one shard: calls :class:`ShardProcessor`, keeps its timer."""

    def __init__(
        self,
        processor: ShardProcessor,
        *,
        recovery: bool,
        gateway_id: str,
        on_error: ErrorHook,
    ) -> None:
        self.p = processor
        self.recovery = recovery
        self.gateway_id = gateway_id
        self.on_error = on_error

    def on_batch(self, values: list[MessageBatch]) -> tuple[list[Any], bool]:
        try:
            out = self.p.process(values)
        except Exception:
            out = self._isolate(values)
        return _items(out), StatefulBatchLogic.RETAIN

    def _isolate(self, values: list[MessageBatch]) -> ShardOutput:
        """Retry a failed batch one message at a time; dead-letter what still fails."""
        self.on_error(traceback.format_exc())
        log.exception("shard step failed on a batch; retrying it message by message")
        fold = not self.p.folded  # readings already folded must not count twice
        merged = ShardOutput()
        for batch in values:
            for topic, payload, received in zip(
                batch.topics, batch.payloads, batch.received_us, strict=True
            ):
                one = MessageBatch([topic], [payload], [received])
                try:
                    out = self.p.process([one], fold=fold)
                except Exception as exc:
                    self.on_error(traceback.format_exc())
                    merged.deadletters.append(self._poison(one, exc))
                    continue
                _merge(merged, out)
        return merged

    def _poison(self, one: MessageBatch, exc: Exception) -> DeadLetterEvent:
        from dataflows.eventclock import from_us

        message = RawMessage(one.topics[0], one.payloads[0], from_us(one.received_us[0]))
        error = f"internal error in the gateway's shard step: {type(exc).__name__}: {exc}"
        return Rejected(message, DeadLetterReason.DECODE_ERROR, error).to_event(self.gateway_id)

    def on_notify(self) -> tuple[list[Any], bool]:
        try:
            out = self.p.tick()
        except Exception:
            self.on_error(traceback.format_exc())
            log.exception("shard step failed on its timer")
            out = ShardOutput()
        return _items(out), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Any], bool]:
        # Open windows are incomplete: keep them (recovery resumes them), emit nothing.
        return [], StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        wake = self.p.next_wake_us()
        return None if wake is None else datetime.fromtimestamp(wake / 1_000_000, UTC)

    def snapshot(self) -> ShardState:
        # Bytewax snapshots every key touched in an epoch even without recovery; the
        # snapshot is only worth making when something will store it. Bytewax pickles
        # it before this shard runs again, and so does ``encode``, right here: the
        # live arrays need no copy of their own.
        return snapshot_blob.encode(self.p.snapshot(copy=False)) if self.recovery else None


def _plain_state(state: ShardState) -> dict[str, Any] | None:
    """Return a stored shard state as plain data (snapshots from before the blobs are)."""
    if isinstance(state, bytes):
        decoded: dict[str, Any] = snapshot_blob.decode(state)
        return decoded
    return state


def _merge(into: ShardOutput, out: ShardOutput) -> None:
    into.alarms.extend(out.alarms)
    into.deadletters.extend(out.deadletters)
    into.site_readings.extend(out.site_readings)
    into.points.extend(out.points)
    into.commands.extend(out.commands)
    into.announcements.extend(out.announcements)


def _items(out: ShardOutput) -> list[Any]:
    items: list[Any] = list(out.points)
    items.extend(out.alarms)
    items.extend(out.deadletters)
    items.extend(out.site_readings)
    items.extend(out.commands)
    items.extend(out.announcements)
    return items


class _SiteLogic(StatefulBatchLogic[SiteReadings, Any, dict[str, Any]]):
    """Runs the :class:`SiteDetector` of one site over its devices' fresh telemetry."""

    def __init__(self, rules: RulesSource, clock: Clock, state: dict[str, Any] | None) -> None:
        self.rules = rules
        self.clock = clock
        self.version, ruleset = rules.current()
        self.det: SiteDetector | None = None
        self.summaries = ActiveSummaries(None if state is None else state.get("active"))
        if state is not None:
            self.det = SiteDetector(state["det"]["site"], ruleset, state=state["det"])

    def on_batch(self, values: list[SiteReadings]) -> tuple[list[Any], bool]:
        version, ruleset = self.rules.current()
        alarms: list[AlarmEvent] = []
        if self.det is None:
            self.det = SiteDetector(values[0].site, ruleset)
        elif version != self.version:
            alarms.extend(self.det.reload(ruleset, self.clock.now_us()))
        self.version = version
        for item in values:
            alarms.extend(self.det.on_readings(item))
        return list(self.summaries.after(alarms)), StatefulBatchLogic.RETAIN

    def snapshot(self) -> dict[str, Any]:
        return {
            "det": None if self.det is None else self.det.snapshot(),
            "active": self.summaries.snapshot(),
        }


def _has_site_patterns(rules: RuleSet) -> bool:
    return any(r.kind == "pattern" and r.scope == "site" for r in rules.rules)


_ALARM_OUTPUTS: tuple[type, ...] = (ActiveAlarms, *ALARM_EVENT_TYPES)


def build_flow(
    source: Source[MessageBatch],
    *,
    topics: TopicScheme,
    points_sink: Sink[Any],
    deadletter_sink: Sink[DeadLetterEvent],
    alarm_sink: Sink[AlarmOutput] | None = None,
    rules: RulesSource | None = None,
    stream: StreamConfig | None = None,
    encoder: PointEncoder | None = None,
    limits: IngestLimits | None = None,
    observer: Observer | None = None,
    clock: Clock | None = None,
    gateway_id: str = "gateway",
    flow_id: str = "sensorgate",
    recovery: bool = False,
    on_error: ErrorHook | None = None,
    adapters: AdaptersConfig | None = None,
    command_sink: Sink[Command] | None = None,
    announce_sink: Sink[Announcement] | None = None,
) -> Dataflow:
    """Build the flow: message batches -> points, alarms, dead letters.

    ``points_sink`` receives :class:`~dataflows.columns.EncodedPoints` when an
    ``encoder`` is given (else :class:`~dataflows.columns.PointColumns`): as
    ``(shard key, points)`` pairs if it is a ``FixedPartitionedSink``, bare otherwise.
    ``alarm_sink`` (optional: without it alarms are computed and dropped) receives
    alarm events and :class:`ActiveAlarms`. ``rules`` default to the default rules.
    ``recovery`` says whether Bytewax stores snapshots (else none are made).
    ``announce_sink`` (optional) receives each shard's :class:`Announcement` of series
    first seen and windows closed (Home Assistant discovery); without it none are made.

    Long only for its signature and this docstring (every sink and setting is a
    keyword); the wiring itself is some 35 lines, with the outputs in helpers below.
    """
    config = stream or StreamConfig()
    obs = observer or NullObserver()
    fleet = FleetClock(config.quiet_us)  # shared by the shards of this process
    rules_source = rules or StaticRules()
    wall = clock or SystemClock()
    # Foreign dialects route by their adapters' device keys (still from the topic alone).
    router = ShardRouter(
        config.shards, None if adapters is None else AdapterSet(adapters).router_key_fn()
    )
    errors: ErrorHook = on_error or (lambda _tb: None)

    def build_shard(state: ShardState) -> _ShardLogic:
        processor = ShardProcessor(
            topics=topics,
            config=config,
            rules=rules_source,
            encoder=encoder,
            limits=limits,
            clock=wall,
            fleet=fleet,
            observer=obs,
            gateway_id=gateway_id,
            adapters=adapters,
            announce=announce_sink is not None,
            state=_plain_state(state),
        )
        return _ShardLogic(processor, recovery=recovery, gateway_id=gateway_id, on_error=errors)

    flow = Dataflow(flow_id)
    raw = op.input("mqtt_in", flow, source)
    keyed = op.flat_map("by_shard", raw, router.split)
    outputs = op.stateful_batch("shard", keyed, build_shard)
    _points_out(outputs, points_sink)
    unkeyed: Stream[Any] = op.map("unkey", outputs, lambda kv: kv[1])
    alarm_stream = _alarms(unkeyed, rules_source, wall)
    if alarm_sink is not None:
        op.output("alarms_out", alarm_stream, alarm_sink)
    _side_outputs(unkeyed, deadletter_sink, command_sink, announce_sink)
    return flow


def _points_out(outputs: Stream[tuple[str, Any]], points_sink: Sink[Any]) -> None:
    """Send the points to their sink: keyed by shard to a partitioned one, bare otherwise."""
    points = op.filter("points", outputs, lambda kv: isinstance(kv[1], PointsOutput))
    if isinstance(points_sink, FixedPartitionedSink):
        op.output("points_out", points, points_sink)
    else:
        op.output("points_out", op.map("unkey_points", points, lambda kv: kv[1]), points_sink)


def _alarms(unkeyed: Stream[Any], rules_source: RulesSource, wall: Clock) -> Stream[Any]:
    """Return the stream of the shards' alarm outputs, with the site detectors' if needed."""
    alarm_stream = op.filter("alarms", unkeyed, lambda o: isinstance(o, _ALARM_OUTPUTS))
    if not _has_site_patterns(rules_source.current()[1]):
        return alarm_stream
    # Site patterns need every device of a site in one place: key the fresh readings a
    # second time, by site. Built only when the rules at start have one, so a gateway
    # without site patterns pays nothing for them.
    fresh = op.filter("site_readings", unkeyed, lambda o: isinstance(o, SiteReadings))
    by_site = op.key_on("by_site", fresh, lambda s: s.site)
    site_out = op.stateful_batch(
        "site", by_site, lambda state: _SiteLogic(rules_source, wall, state)
    )
    site_alarms = op.map("unkey_site", site_out, lambda kv: kv[1])
    return op.merge("all_alarms", alarm_stream, site_alarms)


def _side_outputs(
    unkeyed: Stream[Any],
    deadletter_sink: Sink[DeadLetterEvent],
    command_sink: Sink[Command] | None,
    announce_sink: Sink[Announcement] | None,
) -> None:
    """Send dead letters, and commands and announcements where a sink takes them."""
    letters = op.filter("deadletters", unkeyed, lambda o: isinstance(o, DeadLetterEvent))
    op.output("deadletters_out", letters, deadletter_sink)
    if command_sink is not None:
        commands = op.filter("commands", unkeyed, lambda o: isinstance(o, Command))
        op.output("commands_out", commands, command_sink)
    if announce_sink is not None:
        news = op.filter("announcements", unkeyed, lambda o: isinstance(o, Announcement))
        op.output("announcements_out", news, announce_sink)
