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
step by site and feed it the same telemetry; :class:`SiteDetector`
(:mod:`dataflows.site_detection`) does the rest.
Its alarms are about the pseudo device ``_site``.

State is plain data (``snapshot()``, and ``state=`` to the constructor). A reload of
the rules (:meth:`DeviceDetector.reload`) keeps the state of every (series, rule) key
whose rule id still exists: an unchanged rule keeps its detector, a changed one starts
a fresh detector but keeps its active alarm, and a removed rule clears its alarm.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from contract import DeviceOfflineEvent, DeviceOnlineEvent, Reading, TelemetryEvent
from contract.alarms import AlarmEvent
from dataflows.alarms import Cause, Explain
from dataflows.detectors import DeadmanDetector, Signal
from dataflows.detectors.base import US
from dataflows.detectors.deadman import CadenceView
from dataflows.detectors.factory import build_detector
from dataflows.ingest import Accepted
from dataflows.rule_slots import Slot, SlotEngine, us_of
from dataflows.rules import PatternRule, Rule, RuleSet
from dataflows.series_alarms import BANK_KINDS
from dataflows.site_detection import SITE_DEVICE, SiteDetector
from dataflows.windows import Aggregate

__all__ = ["SITE_DEVICE", "DetectorInput", "DeviceDetector", "SiteDetector", "build_detector"]

DetectorInput = Accepted | TelemetryEvent | Aggregate | DeviceOfflineEvent | DeviceOnlineEvent
"""What :meth:`DeviceDetector.process` takes."""

CadenceSource = CadenceView | Callable[[], CadenceView | None] | None
"""A device's learnt cadence, or a callable giving it when needed."""


class DeviceDetector(SlotEngine):
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
            t = us_of(reading.time)
            newest = t if newest is None else max(newest, t)
            cause = Cause(event_id, f"{reading.sensor}/{reading.metric}", traceparent)
            out.extend(self._reading(reading, t, cause))
        if newest is not None:
            alive = newest if received_at is None else us_of(received_at)
            out.extend(self._alive(alive, Cause(event_id, None, traceparent), newest))
        return self.flush(out)

    def _series_slots(self, sensor: str, metric: str) -> list[tuple[Rule, Slot]]:
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
        t = us_of(event.time)
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
