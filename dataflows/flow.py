"""The gateway dataflow builder.

The builder takes its source and sinks as arguments, so tests run it with Bytewax's
``TestingSource``/``TestingSink`` and production with MQTT and InfluxDB::

    MQTT messages ─▶ decode + validate ─┬─▶ dead letters
                                        ▼
           key by device ─▶ device step: DeviceProcessor (dedupe, event-time windows,
           (telemetry,                   late readings) then DeviceDetector (rules,
            status, commands)            alarm machines, acknowledgements)
                                        │
                                        ├─▶ points: fresh telemetry, aggregates, late readings
                                        └─▶ alarms: alarm events and per-device active summaries

The detector sees the deduplicated telemetry and the closed windows in the order the
processor emits them, device status events dated by their arrival, and
acknowledgement commands; never late readings (their readings are in their telemetry
event already).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeGuard, cast

from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from contract import AlarmData, AlarmState, DeadLetterEvent
from contract.alarms import ALARM_EVENT_TYPES, AlarmEvent
from dataflows.detection import SITE_DEVICE, DetectorInput, DeviceDetector, SiteDetector
from dataflows.detectors import DeadmanDetector
from dataflows.device import (
    Clock,
    DeviceOutput,
    DeviceProcessor,
    FleetClock,
    StreamConfig,
    SystemClock,
)
from dataflows.ingest import Accepted, CommandIn, Ingestor, RawMessage, Rejected, StatusIn
from dataflows.observer import NullObserver, Observer
from dataflows.rules import RuleSet, default_rules
from dataflows.windows import Aggregate

__all__ = ["ActiveAlarms", "AlarmOutput", "RulesSource", "StaticRules", "build_flow"]

log = logging.getLogger(__name__)

DeviceInput = Accepted | StatusIn | CommandIn
"""What the device step takes, keyed by ``site/device``."""


@dataclass(frozen=True, slots=True)
class ActiveAlarms:
    """The active (raised or acknowledged, not cleared) alarms of one device, after a change.

    The alarm sink publishes it retained, so a dashboard that connects late sees the
    current state without replaying the event history.
    """

    site: str
    device: str
    alarms: tuple[AlarmData, ...]


AlarmOutput = AlarmEvent | ActiveAlarms
"""What the alarm sink receives."""


class RulesSource(Protocol):
    """Where the device step gets its rules; ``version`` changes when they do."""

    def current(self) -> tuple[int, RuleSet]:
        """Return (version, rules); cheap, called on every batch and timer."""


class StaticRules:
    """Rules that never change (tests, replays)."""

    def __init__(self, rules: RuleSet | None = None) -> None:
        self._rules = rules or default_rules()

    def current(self) -> tuple[int, RuleSet]:
        """Return version 0 and the rules."""
        return 0, self._rules


class _DeviceLogic(StatefulBatchLogic[DeviceInput, Any, dict[str, Any]]):
    """Runs :class:`DeviceProcessor` and :class:`DeviceDetector` of one device together.

    Same key, one snapshot holding both (so Bytewax recovery restores windows, dedupe
    and alarm state at the same epoch), one timer: the earlier of the two wake times.
    """

    def __init__(
        self,
        processor: DeviceProcessor,
        rules: RulesSource,
        clock: Clock,
        state: dict[str, Any] | None,
    ) -> None:
        self.p = processor
        self.rules = rules
        self.clock = clock
        self.version, ruleset = rules.current()
        self.det: DeviceDetector | None = None
        self.active: dict[str, dict[str, Any]] = {}
        """alarm id -> AlarmData as JSON-able data, for the retained summary."""
        if state is not None and state.get("det") is not None:
            det = state["det"]
            self.det = DeviceDetector(det["site"], det["device"], ruleset, state=det)
            self.active = dict(state.get("active") or {})
            self._restart_silence(clock.now_us())

    def _restart_silence(self, now_us: int) -> None:
        # Silence is measured on the gateway's arrival clock, and the gateway was down:
        # as for the windows' quiet period, it counts from the restart, or every device
        # would raise a deadman alarm at once after a downtime longer than its silence.
        assert self.det is not None
        for slot in self.det.slots.values():
            detector = slot.detector
            if (
                isinstance(detector, DeadmanDetector)
                and not slot.machine.active
                and detector.last_us is not None
                and detector.last_us < now_us
            ):
                detector.last_us = now_us

    def _detector(self, site: str, device: str) -> DeviceDetector:
        if self.det is None:  # Bytewax builds the logic before it sees the key
            self.det = DeviceDetector(site, device, self.rules.current()[1])
        return self.det

    def _reload(self, now_us: int) -> list[AlarmEvent]:
        version, ruleset = self.rules.current()
        if version == self.version:
            return []
        self.version = version
        if self.det is None:
            return []
        # Keeps the state of every (series, rule) key whose rule id survives.
        return self.det.reload(ruleset, now_us)

    def on_batch(self, values: list[DeviceInput]) -> tuple[list[Any], bool]:
        now = self.clock.now_us()
        alarms = self._reload(now)
        out: list[Any] = []
        run: list[Accepted] = []
        feed: list[DetectorInput] = []

        def flush_run() -> None:
            if run:
                produced = self.p.process(run)
                out.extend(produced)
                feed.extend(o for o in produced if isinstance(o, Accepted | Aggregate))
                run.clear()

        for value in values:
            if isinstance(value, Accepted):
                run.append(value)
                continue
            flush_run()
            if isinstance(value, StatusIn):
                data = value.event.data
                self._detector(data.site, data.device)
                feed.append(value.arrival_event())
            else:
                cmd = value.command
                det = self._detector(cmd.data.site, cmd.data.device)
                alarms.extend(det.process(feed))
                feed.clear()
                acked = det.acknowledge(cmd.data.alarm_id, cmd.data.by, cmd.time)
                if not acked:
                    log.info(
                        "acknowledge %s of %s: no such active alarm",
                        cmd.data.alarm_id,
                        value.device_key,
                    )
                alarms.extend(acked)
        flush_run()
        if feed:
            first = feed[0]
            if self.det is None and isinstance(first, Accepted):
                self._detector(first.event.data.site, first.event.data.device)
            assert self.det is not None
            alarms.extend(self.det.process(feed))
        return self._with_alarms(out, alarms), StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[Any], bool]:
        now = self.clock.now_us()
        alarms = self._reload(now)
        out: list[Any] = list(self.p.tick(now))
        if self.det is not None:
            alarms.extend(self.det.process(o for o in out if isinstance(o, Aggregate)))
            alarms.extend(self.det.tick(now))
        return self._with_alarms(out, alarms), StatefulBatchLogic.RETAIN

    def _with_alarms(self, out: list[Any], alarms: list[AlarmEvent]) -> list[Any]:
        assert self.det is not None or not alarms
        site, device = (self.det.site, self.det.device) if self.det else ("", "")
        return _with_summary(self.active, site, device, out, alarms)

    def on_eof(self) -> tuple[list[Any], bool]:
        # Open windows are incomplete: keep them (recovery resumes them), emit nothing.
        return [], StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        wakes = [self.p.next_wake_us()]
        if self.det is not None:
            due = self.det.next_wake_us()
            if due is not None:
                # A deadman that is due but waits out its rule's ``for`` stays due:
                # re-check ten times a second rather than on every worker loop.
                due = max(due, self.clock.now_us() + 100_000)
            wakes.append(due)
        known = [w for w in wakes if w is not None]
        return datetime.fromtimestamp(min(known) / 1_000_000, UTC) if known else None

    def snapshot(self) -> dict[str, Any]:
        return {
            "proc": self.p.snapshot(),
            "det": None if self.det is None else self.det.snapshot(),
            "active": dict(self.active),
        }


def _with_summary(
    active: dict[str, dict[str, Any]],
    site: str,
    device: str,
    out: list[Any],
    alarms: list[AlarmEvent],
) -> list[Any]:
    """Append ``alarms`` and, if any, the key's new :class:`ActiveAlarms` to ``out``."""
    if not alarms:
        return out
    for event in alarms:
        data = event.data
        if data.state is AlarmState.CLEARED:
            active.pop(data.alarm_id, None)
        else:
            active[data.alarm_id] = data.model_dump(mode="json")
    out.extend(alarms)
    summary = tuple(AlarmData.model_validate(d) for d in active.values())
    out.append(ActiveAlarms(site, device, summary))
    return out


class _SiteLogic(StatefulBatchLogic[Accepted, Any, dict[str, Any]]):
    """Runs the :class:`SiteDetector` of one site over its devices' fresh telemetry."""

    def __init__(self, rules: RulesSource, clock: Clock, state: dict[str, Any] | None) -> None:
        self.rules = rules
        self.clock = clock
        self.version, ruleset = rules.current()
        self.det: SiteDetector | None = None
        self.active: dict[str, dict[str, Any]] = {}
        if state is not None:
            self.det = SiteDetector(state["det"]["site"], ruleset, state=state["det"])
            self.active = dict(state.get("active") or {})

    def on_batch(self, values: list[Accepted]) -> tuple[list[Any], bool]:
        version, ruleset = self.rules.current()
        alarms: list[AlarmEvent] = []
        if self.det is None:
            self.det = SiteDetector(values[0].event.data.site, ruleset)
        elif version != self.version:
            alarms.extend(self.det.reload(ruleset, self.clock.now_us()))
        self.version = version
        for item in values:
            alarms.extend(self.det.on_telemetry(item.event))
        out = _with_summary(self.active, self.det.site, SITE_DEVICE, [], alarms)
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> dict[str, Any]:
        return {
            "det": None if self.det is None else self.det.snapshot(),
            "active": dict(self.active),
        }


def _has_site_patterns(rules: RuleSet) -> bool:
    return any(r.kind == "pattern" and r.scope == "site" for r in rules.rules)


def build_flow(
    source: Source[RawMessage],
    *,
    ingestor: Ingestor,
    points_sink: Sink[DeviceOutput],
    deadletter_sink: Sink[DeadLetterEvent],
    alarm_sink: Sink[AlarmOutput] | None = None,
    rules: RulesSource | None = None,
    stream: StreamConfig | None = None,
    observer: Observer | None = None,
    clock: Clock | None = None,
    gateway_id: str = "gateway",
    flow_id: str = "sensorgate",
) -> Dataflow:
    """Build the flow: messages -> telemetry, aggregates, late data, alarms.

    Rejected messages become dead letters. ``points_sink`` receives fresh telemetry
    (:class:`Accepted`), closed-window :class:`~dataflows.windows.Aggregate` values and
    :class:`~dataflows.device.LateReading` values. ``alarm_sink`` (optional: without it
    alarms are computed and dropped) receives alarm events and :class:`ActiveAlarms`.
    ``rules`` default to :func:`~dataflows.rules.default_rules`.
    """
    config = stream or StreamConfig()
    obs = observer or NullObserver()
    fleet = FleetClock(config.quiet_us)  # shared by the devices of this process
    rules_source = rules or StaticRules()
    wall = clock or SystemClock()

    def decode(msg: RawMessage) -> Accepted | StatusIn | CommandIn | Rejected:
        result = ingestor.accept(msg)
        if isinstance(result, Accepted):
            obs.message_in(len(result.event.data.readings))
        elif isinstance(result, Rejected):
            obs.rejected(result.reason.value)
        return result

    def build_device(state: dict[str, Any] | None) -> _DeviceLogic:
        proc_state = None
        if state is not None:
            # Snapshots from before the detector was wired hold the processor's alone.
            proc_state = state.get("proc", state)
        processor = DeviceProcessor(
            None, None, config, clock=clock, fleet=fleet, observer=obs, state=proc_state
        )
        return _DeviceLogic(processor, rules_source, wall, state)

    flow = Dataflow(flow_id)
    raw = op.input("mqtt_in", flow, source)
    checked = op.map("decode", raw, decode)
    split = op.branch("valid", checked, _is_valid)
    keyed = op.key_on("by_device", split.trues, lambda a: a.device_key)
    outputs = op.stateful_batch("device", keyed, build_device)
    unkeyed = op.map("unkey", outputs, lambda kv: kv[1])
    kinds = op.branch("is_alarm", unkeyed, _is_alarm_output)
    op.output("points_out", kinds.falses, points_sink)
    alarm_stream = kinds.trues
    if _has_site_patterns(rules_source.current()[1]):
        # Site patterns need every device of a site in one place: key the fresh
        # telemetry a second time, by site. Built only when the rules at start have
        # one, so a gateway without site patterns pays nothing for them.
        fresh = op.filter("fresh", kinds.falses, lambda o: isinstance(o, Accepted))
        by_site = op.key_on("by_site", fresh, lambda a: cast(Accepted, a).event.data.site)
        site_out = op.stateful_batch(
            "site", by_site, lambda state: _SiteLogic(rules_source, wall, state)
        )
        site_alarms = op.map("unkey_site", site_out, lambda kv: kv[1])
        alarm_stream = op.merge("alarms", alarm_stream, site_alarms)
    if alarm_sink is not None:
        op.output("alarms_out", alarm_stream, alarm_sink)
    letters = op.map("deadletter", split.falses, lambda r: cast(Rejected, r).to_event(gateway_id))
    op.output("deadletters_out", letters, deadletter_sink)
    return flow


def _is_valid(item: Accepted | StatusIn | CommandIn | Rejected) -> TypeGuard[DeviceInput]:
    return not isinstance(item, Rejected)


_ALARM_OUTPUTS: tuple[type, ...] = (ActiveAlarms, *ALARM_EVENT_TYPES)


def _is_alarm_output(item: Any) -> bool:
    return isinstance(item, _ALARM_OUTPUTS)
