"""The detection engine of one device (and of one site, for site-level patterns).

:class:`DeviceDetector` takes one device's telemetry, closed-window aggregates and
status events in event-time order, runs the matching rules' detectors and the alarm
state machine of each (series, rule) key, and returns alarm events. The gateway flow
calls it per device (keyed like :class:`~dataflows.device.DeviceProcessor`); the
offline ``sensorgate detect`` and ``evaluate`` commands call the very same class.

Time-driven checks (deadman) run in :meth:`DeviceDetector.tick`; the flow should call
it at :meth:`DeviceDetector.next_wake_us` (and may call it on every batch). Silence
is measured on the clock the inputs bring: given :class:`~dataflows.ingest.Accepted`
items, on the gateway's arrival time (``received_at``), so pass the wall clock to
``tick``; given bare telemetry events (offline detection), on event time. A deadman
rule with ``silence = "auto"`` allows each device ``factor`` times its own median
interval between messages (:mod:`dataflows.cadence`), at least ``min_silence``.

Site-level patterns need every device of a site in one place: key a second stateful
step by site and feed it the same telemetry; :class:`SiteDetector` does the rest.
Its alarms are about the pseudo device ``_site``.

State is plain data (``snapshot()``, and ``state=`` to the constructor). A reload of
the rules (:meth:`DeviceDetector.reload`) keeps the state of every (series, rule) key
whose rule id still exists: an unchanged rule keeps its detector, a changed one starts
a fresh detector but keeps its active alarm, and a removed rule clears its alarm.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from contract import DeviceOfflineEvent, DeviceOnlineEvent, Reading, TelemetryEvent
from contract.alarms import AlarmEvent
from dataflows.alarms import AlarmKey, AlarmMachine, AlarmPolicy, Cause, Explain
from dataflows.detectors import DeadmanDetector, Signal
from dataflows.detectors.base import US
from dataflows.detectors.deadman import CadenceView
from dataflows.detectors.factory import build_detector
from dataflows.ingest import Accepted
from dataflows.rules import PatternRule, Rule, RuleSet
from dataflows.series_alarms import BANK_KINDS
from dataflows.windows import Aggregate

__all__ = ["SITE_DEVICE", "DetectorInput", "DeviceDetector", "SiteDetector", "build_detector"]

SITE_DEVICE = "_site"
"""The device id of site-level alarms."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SEP = "\x1f"

DetectorInput = Accepted | TelemetryEvent | Aggregate | DeviceOfflineEvent | DeviceOnlineEvent
"""What :meth:`DeviceDetector.process` takes."""

CadenceSource = CadenceView | Callable[[], CadenceView | None] | None
"""A device's learnt cadence, or a callable giving it when needed."""


def _us(when: datetime) -> int:
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _fingerprint(rule: Rule) -> str:
    return hashlib.sha1(rule.model_dump_json().encode(), usedforsecurity=False).hexdigest()[:16]


@dataclass(slots=True)
class _Slot:
    """One (series, rule) key: its detector, its alarm machine, its last time."""

    rule_id: str
    fingerprint: str
    detector: Any
    # Any: the detector of any rule kind; the engine calls it by its rule's kind
    # (a pattern detector's update takes a member, a deadman's is ticked instead).
    machine: AlarmMachine
    last_us: int | None = None


class _Engine:
    """Slots keyed by (series, rule) with reload and snapshot; shared by device and site."""

    def __init__(self, site: str, device: str, rules: RuleSet) -> None:
        self.site = site
        self.device = device
        self.rules = rules
        self.slots: dict[str, _Slot] = {}
        # Per-series caches of (rule, slot) pairs and of the patterns a member feeds.
        self._pairs: dict[tuple[str, str], list[tuple[Rule, _Slot]]] = {}
        self._pattern_rules: dict[str, list[PatternRule]] = {}
        self._pending: list[AlarmEvent] = []
        self.stale = 0
        """Readings skipped because they were not newer than their key's last one."""

    def _slot(self, rule: Rule, sensor: str, metric: str, suffix: str = "") -> _Slot:
        name = f"{sensor}/{metric}" if sensor != "*" else "*"
        skey = f"{name}{_SEP}{rule.id}{suffix}"
        slot = self.slots.get(skey)
        if slot is None:
            key = AlarmKey(self.site, self.device, sensor, metric, f"{rule.id}{suffix}")
            slot = _Slot(
                rule.id, _fingerprint(rule), self._build(rule), AlarmMachine(key, rule.policy())
            )
            self.slots[skey] = slot
        return slot

    def _build(self, rule: Rule) -> Any:
        return build_detector(rule)

    def _feed(
        self, slot: _Slot, t_us: int, signal: Signal | None, cause: Cause | None
    ) -> list[AlarmEvent]:
        slot.last_us = t_us if slot.last_us is None else max(slot.last_us, t_us)
        return slot.machine.update(t_us, signal, cause)

    def _fresh(self, slot: _Slot, t_us: int) -> bool:
        if slot.last_us is not None and t_us <= slot.last_us:
            self.stale += 1
            return False
        return True

    def _feed_pattern(
        self,
        rule: PatternRule,
        t_us: int,
        member: str,
        value: float,
        cause: Cause,
        out: list[AlarmEvent],
    ) -> None:
        """Give a pattern rule one member's reading; its events go to ``out``.

        Readings at the rule's last time still count (members share timestamps); only
        an older one is stale.
        """
        slot = self._slot(rule, "*", "*")
        if slot.last_us is not None and t_us < slot.last_us:
            self.stale += 1
            return
        signal = slot.detector.update(t_us, member, value)
        if signal is not None:
            out.extend(self._feed(slot, t_us, signal, cause))

    def flush(self, out: list[AlarmEvent]) -> list[AlarmEvent]:
        if self._pending:
            out = self._pending + out
            self._pending = []
        return out

    def reload(self, rules: RuleSet, now_us: int | None = None) -> list[AlarmEvent]:
        """Use new rules, keeping the state of every key whose rule id still exists."""
        self.rules = rules
        self._pairs.clear()
        self._pattern_rules.clear()
        out: list[AlarmEvent] = []
        for skey, slot in list(self.slots.items()):
            rule = rules.by_id.get(slot.rule_id)
            if rule is None:
                t = now_us if now_us is not None else (slot.last_us or 0)
                out.extend(slot.machine.force_clear(t, "rule removed"))
                del self.slots[skey]
                continue
            fingerprint = _fingerprint(rule)
            if fingerprint != slot.fingerprint:
                slot.detector = self._build(rule)
                slot.fingerprint = fingerprint
                slot.machine.set_policy(rule.policy())
        return out

    def acknowledge(self, alarm_id: str, by: str, at: datetime | None = None) -> list[AlarmEvent]:
        """Acknowledge the active alarm ``alarm_id`` (nothing if it is not active here)."""
        for slot in self.slots.values():
            if slot.machine.alarm_id == alarm_id:
                return slot.machine.acknowledge(by, at or datetime.now(UTC))
        return []

    def active_alarms(self) -> list[tuple[AlarmKey, str]]:
        """(key, alarm id) of every active alarm."""
        return [
            (s.machine.key, s.machine.alarm_id)
            for s in self.slots.values()
            if s.machine.alarm_id is not None
        ]

    def snapshot(self) -> dict[str, Any]:
        """Return the whole state as plain data."""
        slots = {}
        for skey, slot in self.slots.items():
            key = slot.machine.key
            slots[skey] = {
                "rule": slot.rule_id,
                "fp": slot.fingerprint,
                "key": [key.sensor, key.metric, key.rule],
                "last": slot.last_us,
                "det": None if slot.detector is None else slot.detector.snapshot(),
                "alarm": slot.machine.snapshot(),
            }
        return {"site": self.site, "device": self.device, "slots": slots}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot` (with the current rules)."""
        self.site, self.device = state["site"], state["device"]
        self._pairs.clear()
        self._pattern_rules.clear()
        for skey, doc in state["slots"].items():
            sensor, metric, rule_name = doc["key"]
            key = AlarmKey(self.site, self.device, sensor, metric, rule_name)
            rule = self.rules.by_id.get(doc["rule"])
            if rule is None:
                machine = AlarmMachine(key, AlarmPolicy())
                machine.restore(doc["alarm"])
                self._pending.extend(machine.force_clear(doc["last"] or 0, "rule removed"))
                continue
            slot = _Slot(
                doc["rule"],
                _fingerprint(rule),
                self._build(rule),
                AlarmMachine(key, rule.policy()),
            )
            slot.machine.restore(doc["alarm"])
            slot.last_us = doc["last"]
            if (
                doc["fp"] == slot.fingerprint
                and slot.detector is not None
                and doc["det"] is not None
            ):
                slot.detector.restore(doc["det"])
            self.slots[skey] = slot


class DeviceDetector(_Engine):
    """Rules and alarms of one device (see the module docstring).

    Inputs, in event-time order per series (older readings are skipped and counted in
    :attr:`stale`): :class:`~contract.TelemetryEvent` (deduplicated telemetry),
    :class:`~dataflows.windows.Aggregate` (closed windows), and
    :class:`~contract.DeviceOfflineEvent` / :class:`~contract.DeviceOnlineEvent`.
    Output: alarm events (raised, updated, cleared, acknowledged), in order.
    """

    def __init__(
        self,
        site: str,
        device: str,
        rules: RuleSet,
        *,
        state: dict[str, Any] | None = None,
        series_banks: bool = False,
        learn_cadence: bool = True,
    ) -> None:
        super().__init__(site, device, rules)
        self.series_banks = series_banks
        """Leave the bank kinds of series rules to :class:`~dataflows.series_alarms.
        SeriesAlarms` (the gateway's columnar path); False: evaluate every rule here (the
        scalar reference, used by tests)."""
        self.learn_cadence = learn_cadence
        """Learn the device's cadence for ``silence = "auto"`` deadman rules here; False:
        the caller learns it (:class:`~dataflows.cadence.CadenceArrays`) and hands it to
        :meth:`alive` and :meth:`tick`."""
        if state is not None:
            self.restore(state)

    def _build(self, rule: Rule) -> Any:
        detector = build_detector(rule)
        if (
            not self.learn_cadence
            and isinstance(detector, DeadmanDetector)
            and rule.kind == "deadman"  # always so for a deadman detector; narrows the type
            and rule.scope == "device"
        ):
            detector.cadence = None
        return detector

    def process(self, items: Iterable[DetectorInput]) -> list[AlarmEvent]:
        """Take a batch of inputs; return the alarm events they cause."""
        out: list[AlarmEvent] = []
        for item in items:
            if isinstance(item, Accepted):
                out.extend(self.on_telemetry(item.event, received_at=item.received_at))
            elif isinstance(item, TelemetryEvent):
                out.extend(self.on_telemetry(item))
            elif isinstance(item, Aggregate):
                out.extend(self.on_aggregate(item))
            elif isinstance(item, DeviceOfflineEvent | DeviceOnlineEvent):
                out.extend(self.on_status(item))
            else:
                raise TypeError(
                    "DeviceDetector.process takes Accepted, TelemetryEvent, Aggregate or device"
                    f" status events; got a {type(item).__name__}"
                )
        return self.flush(out)

    def on_telemetry(
        self, event: TelemetryEvent, *, received_at: datetime | None = None
    ) -> list[AlarmEvent]:
        """Take one telemetry event (its readings, sorted by time).

        ``received_at`` (the gateway's arrival time) is the clock of the deadman
        checks when given; otherwise the readings' event time is.
        """
        readings = sorted(event.data.readings, key=lambda r: r.time)
        return self.on_readings(
            readings,
            event_id=event.id,
            traceparent=event.traceparent,
            received_at=received_at,
        )

    def on_readings(
        self,
        readings: Iterable[Reading],
        *,
        event_id: str | None = None,
        traceparent: str | None = None,
        received_at: datetime | None = None,
    ) -> list[AlarmEvent]:
        """Take readings of this device (in time order), as from one telemetry event."""
        out: list[AlarmEvent] = []
        newest: int | None = None
        for reading in readings:
            t = _us(reading.time)
            newest = t if newest is None else max(newest, t)
            cause = Cause(event_id, f"{reading.sensor}/{reading.metric}", traceparent)
            out.extend(self._reading(reading, t, cause))
        if newest is not None:
            alive = newest if received_at is None else _us(received_at)
            out.extend(self._alive(alive, Cause(event_id, None, traceparent), newest))
        return self.flush(out)

    def _series_slots(self, sensor: str, metric: str) -> list[tuple[Rule, _Slot]]:
        key = (sensor, metric)
        pairs = self._pairs.get(key)
        if pairs is None:
            rules = self.rules.for_series(self.site, self.device, sensor, metric)
            if self.series_banks:
                rules = tuple(r for r in rules if r.kind not in BANK_KINDS)
            pairs = self._pairs[key] = [(r, self._slot(r, sensor, metric)) for r in rules]
        return pairs

    def wants_readings(self, sensor: str, metric: str) -> bool:
        """Whether readings of this series feed a rule here (series deadman, patterns)."""
        return bool(self._series_slots(sensor, metric)) or bool(
            self._patterns(f"{sensor}/{metric}")
        )

    def reading(
        self,
        sensor: str,
        metric: str,
        value: float | None,
        fault: str | None,
        t_us: int,
        cause: Cause,
    ) -> list[AlarmEvent]:
        """Take one reading of a series this detector :meth:`wants_readings` of."""
        return self.flush(self._reading(_Row(sensor, metric, value, fault), t_us, cause))

    def alive(
        self,
        t_us: int,
        cause: Cause,
        newest_us: int | None = None,
        cadence: CadenceSource = None,
    ) -> list[AlarmEvent]:
        """Record that the device spoke at ``t_us``: end deadman and offline alarms.

        ``newest_us``: its newest reading's time; ``cadence``: the device's (or a
        callable giving it, asked only when an alarm may end), when the caller learns it.
        """
        return self.flush(self._alive(t_us, cause, newest_us, cadence))

    def deadman_armed(self) -> bool:
        """Whether a deadman rule watches this device and may raise (or fold) now."""
        return any(
            isinstance(slot.detector, DeadmanDetector)
            and (not slot.machine.active or slot.machine.rearmed)
            for slot in self.slots.values()
        )

    def _patterns(self, member: str) -> list[PatternRule]:
        found = self._pattern_rules.get(member)
        if found is None:
            found = self._pattern_rules[member] = [
                r
                for r in self.rules.for_device(self.site, self.device)
                if r.kind == "pattern" and rule_has_member(r, member)
            ]
        return found

    def _reading(self, reading: _ReadingLike, t: int, cause: Cause) -> list[AlarmEvent]:
        out: list[AlarmEvent] = []
        sensor, metric = reading.sensor, reading.metric
        value = reading.value
        for rule, slot in self._series_slots(sensor, metric):
            last = slot.last_us
            if last is not None and t <= last:
                self.stale += 1
                continue
            detector = slot.detector
            signal: Signal | None
            if value is None:
                if rule.kind != "range" or not rule.faults:
                    continue
                signal = Signal(True, None, None, f"sensor fault: {reading.fault}")
            elif detector is None:
                signal = Signal(False, value)
            else:
                signal = detector.update(t, value)
            slot.last_us = t
            events = slot.machine.update(t, signal, cause)
            if events:
                out.extend(events)
        if value is not None:
            member = f"{sensor}/{metric}"
            for rule in self._patterns(member):
                self._feed_pattern(rule, t, member, value, cause, out)
        return out

    def _alive(
        self,
        t: int,
        cause: Cause,
        newest: int | None = None,
        cadence: CadenceSource = None,
    ) -> list[AlarmEvent]:
        """End the deadman and offline conditions: the device spoke at ``t``."""
        out: list[AlarmEvent] = []
        for rule in self.rules.for_device(self.site, self.device):
            if rule.kind == "deadman":
                slot = self._slot(rule, "*", "*")
                if slot.last_us is None or t > slot.last_us:
                    detector = slot.detector
                    detector.note(t, newest)
                    if slot.machine.idle:  # the common case: nothing to end, no words
                        signal = Signal(False)
                    else:
                        given = cadence() if callable(cadence) else cadence
                        signal = Signal(False, None, detector.silence(given) / US)
                    out.extend(self._feed(slot, t, signal, cause))
            elif rule.kind == "offline":
                slot = self._slot(rule, "*", "*")
                if slot.machine.active and (slot.last_us is None or t >= slot.last_us):
                    out.extend(slot.machine.force_clear(t, "device is reporting again", cause))
                    slot.last_us = t
        return out

    def on_aggregate(self, agg: Aggregate) -> list[AlarmEvent]:
        """Take one closed window's aggregate (its time is the window end)."""
        out: list[AlarmEvent] = []
        rules = self.rules.for_aggregate(self.site, self.device, agg.sensor, agg.metric, agg.window)
        for rule in rules:
            value = _aggregate_field(agg, rule.field)
            if value is None:
                continue
            exact = not any(c in rule.window for c in "*?[")
            slot = self._slot(rule, agg.sensor, agg.metric, "" if exact else f"@{agg.window}")
            if not self._fresh(slot, agg.end_us):
                continue
            signal = slot.detector.update(agg.end_us, value)
            if signal.active:
                signal = Signal(
                    True,
                    signal.value,
                    signal.threshold,
                    f"{agg.window} {rule.field} {signal.message}",
                    signal.severity,
                )
            cause = Cause(None, f"{agg.sensor}/{agg.metric}@{agg.window}", None)
            out.extend(self._feed(slot, agg.end_us, signal, cause))
        return self.flush(out)

    def on_status(self, event: DeviceOfflineEvent | DeviceOnlineEvent) -> list[AlarmEvent]:
        """Take a birth or last-will event: offline raises, online clears."""
        out: list[AlarmEvent] = []
        t = _us(event.time)
        cause = Cause(event.id, None, event.traceparent)
        for rule in self.rules.for_device(self.site, self.device):
            if rule.kind != "offline":
                continue
            slot = self._slot(rule, "*", "*")
            if slot.last_us is not None and t < slot.last_us:
                self.stale += 1
                continue
            if isinstance(event, DeviceOfflineEvent):
                reason = event.data.reason or "last will"
                out.extend(
                    self._feed(
                        slot, t, Signal(True, None, None, f"device offline: {reason}"), cause
                    )
                )
            else:
                slot.last_us = t
                out.extend(slot.machine.force_clear(t, "device online", cause))
        return self.flush(out)

    def tick(self, now_us: int, cadence: CadenceView | None = None) -> list[AlarmEvent]:
        """Run the time-driven checks (deadman) at ``now_us``.

        ``cadence``: the device's, for deadman rules whose cadence the caller learns.
        """
        out: list[AlarmEvent] = []
        for slot in self.slots.values():
            detector = slot.detector
            machine = slot.machine
            if not isinstance(detector, DeadmanDetector) or (
                machine.active and not machine.rearmed
            ):
                continue
            given = cadence if detector.cadence is None else None
            signal = detector.check(now_us, given)
            if signal is not None:
                t = max(now_us, machine.last_us or now_us)
                explain = _deadman_explain(detector, given)
                out.extend(machine.update(t, signal, None, explain))
        return self.flush(out)

    def next_wake_us(self) -> int | None:
        """When :meth:`tick` next has something to check (None: nothing to wait for)."""
        due = [
            d
            for slot in self.slots.values()
            if isinstance(slot.detector, DeadmanDetector)
            and (not slot.machine.active or slot.machine.rearmed)
            for d in (slot.detector.due_us(),)
            if d is not None
        ]
        return min(due) if due else None


def _deadman_explain(detector: DeadmanDetector, cadence: CadenceView | None) -> Explain:
    return lambda: detector.detail(cadence)


class _ReadingLike(Protocol):
    """What the per-event rules read of a reading: a :class:`Reading` or a :class:`_Row`."""

    @property
    def sensor(self) -> str: ...
    @property
    def metric(self) -> str: ...
    @property
    def value(self) -> float | None: ...
    @property
    def fault(self) -> str | None: ...


class _Row(NamedTuple):
    """A reading as the per-event rules see it (sensor, metric, value or fault)."""

    sensor: str
    metric: str
    value: float | None
    fault: str | None


def rule_has_member(rule: PatternRule, member: str) -> bool:
    """Whether a pattern rule's conditions look at ``member`` (skips unrelated series)."""
    return any(fnmatch.fnmatchcase(member, c.member) for c in rule.conditions)


def _aggregate_field(agg: Aggregate, field: str) -> float | None:
    if field == "spread":
        return agg.max - agg.min
    value = getattr(agg, field)
    return None if value is None else float(value)


class SiteDetector(_Engine):
    """Site-scope pattern rules over the telemetry of every device of one site.

    Key it by site in the flow and feed it each device's deduplicated telemetry. The
    members of its conditions are ``device/sensor/metric``; its alarms are about the
    device :data:`SITE_DEVICE`.
    """

    def __init__(self, site: str, rules: RuleSet, *, state: dict[str, Any] | None = None) -> None:
        super().__init__(site, SITE_DEVICE, rules)
        if state is not None:
            self.restore(state)

    def on_readings(self, item: Any) -> list[AlarmEvent]:
        """Take one device's fresh readings (a :class:`~dataflows.shard.SiteReadings`)."""
        out: list[AlarmEvent] = []
        rules = self.rules.site_patterns(self.site)
        if not rules:
            return self.flush(out)
        for sensor, metric, value, t in item.readings:
            member = f"{item.device}/{sensor}/{metric}"
            cause = Cause(item.event_id, member, item.traceparent)
            for rule in rules:
                self._feed_pattern(rule, t, member, value, cause, out)
        return self.flush(out)

    def on_telemetry(self, event: TelemetryEvent) -> list[AlarmEvent]:
        """Take one telemetry event of a device of this site."""
        out: list[AlarmEvent] = []
        rules = self.rules.site_patterns(self.site)
        if not rules:
            return self.flush(out)
        device = event.data.device
        for reading in sorted(event.data.readings, key=lambda r: r.time):
            if reading.value is None:
                continue
            t = _us(reading.time)
            member = f"{device}/{reading.sensor}/{reading.metric}"
            cause = Cause(event.id, member, event.traceparent)
            for rule in rules:
                self._feed_pattern(rule, t, member, reading.value, cause, out)
        return self.flush(out)
