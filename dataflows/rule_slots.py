"""The (series, rule) slots of a detector: detector, alarm machine, reload and snapshot.

:class:`SlotEngine` is what :class:`~dataflows.detection.DeviceDetector` and
:class:`~dataflows.site_detection.SiteDetector` share: one :class:`Slot` per (series,
rule) key, built on first use; a reload of the rules that keeps the state of every key
whose rule id still exists (an unchanged rule keeps its detector, a changed one starts
a fresh detector but keeps its active alarm, a removed rule clears its alarm); and the
whole state as plain data (``snapshot``/``restore``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contract.alarms import AlarmEvent
from dataflows.alarms import AlarmKey, AlarmMachine, AlarmPolicy, Cause
from dataflows.detectors import Signal
from dataflows.detectors.factory import build_detector
from dataflows.rule_kinds import rule_fingerprint
from dataflows.rules import PatternRule, Rule, RuleSet

__all__ = ["Slot", "SlotEngine", "us_of"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SEP = "\x1f"


def us_of(when: datetime) -> int:
    """Return an aware time in Unix microseconds (exact, no float)."""
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(slots=True)
class Slot:
    """One (series, rule) key: its detector, its alarm machine, its last time."""

    rule_id: str
    fingerprint: str
    detector: Any
    # Any: the detector of any rule kind; the engine calls it by its rule's kind
    # (a pattern detector's update takes a member, a deadman's is ticked instead).
    machine: AlarmMachine
    last_us: int | None = None


class SlotEngine:
    """Slots keyed by (series, rule) with reload and snapshot; shared by device and site."""

    def __init__(self, site: str, device: str, rules: RuleSet) -> None:
        self.site = site
        self.device = device
        self.rules = rules
        self.slots: dict[str, Slot] = {}
        # Per-series caches of (rule, slot) pairs and of the patterns a member feeds.
        self._pairs: dict[tuple[str, str], list[tuple[Rule, Slot]]] = {}
        self._pattern_rules: dict[str, list[PatternRule]] = {}
        self._pending: list[AlarmEvent] = []
        self.stale = 0
        """Readings skipped because they were not newer than their key's last one."""

    def _slot(self, rule: Rule, sensor: str, metric: str, suffix: str = "") -> Slot:
        name = f"{sensor}/{metric}" if sensor != "*" else "*"
        skey = f"{name}{_SEP}{rule.id}{suffix}"
        slot = self.slots.get(skey)
        if slot is None:
            key = AlarmKey(self.site, self.device, sensor, metric, f"{rule.id}{suffix}")
            slot = Slot(
                rule.id, rule_fingerprint(rule), self._build(rule), AlarmMachine(key, rule.policy())
            )
            self.slots[skey] = slot
        return slot

    def _build(self, rule: Rule) -> Any:
        return build_detector(rule)

    def _feed(
        self, slot: Slot, t_us: int, signal: Signal | None, cause: Cause | None
    ) -> list[AlarmEvent]:
        slot.last_us = t_us if slot.last_us is None else max(slot.last_us, t_us)
        return slot.machine.update(t_us, signal, cause)

    def _fresh(self, slot: Slot, t_us: int) -> bool:
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
        """Return ``out`` after the events a restore left pending (alarms of removed rules)."""
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
            fingerprint = rule_fingerprint(rule)
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
            slot = Slot(
                doc["rule"],
                rule_fingerprint(rule),
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
