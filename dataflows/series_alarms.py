"""Per-series alarm rules over columns: detector banks, and alarm machines only where needed.

Every series rule (threshold, range, adaptive, anomaly, rate, flatline) gets a
:class:`~dataflows.detectors.bank.DetectorBank` per shard, with one slot per series the
rule watches. A batch of readings (series index, time, value) is sorted by slot and
time and fed to the bank in rounds (the first reading of every slot, then the second,
...). A reading not newer than its slot's last one is stale and skipped (re-delivered
or out-of-order data: a restart that replays data neither raises twice nor loses a
clear). The quiet case, an inactive signal on a series whose alarm machine is idle,
costs nothing but array operations. Only entries whose signal is active, or whose
series has a busy machine (pending, raised), reach the per-event Python path: a
:class:`~dataflows.alarms.AlarmMachine` per (series, rule), created on first need and
kept (it remembers recent raises for flapping). The machine is handed a callable for
the entry's :class:`~contract.alarms.AlarmDetail` (:mod:`dataflows.explain`: expected
value and band, component, score, history), called only when it makes an event.

Fault readings (NaN value) reach only ``range`` rules with ``faults = true``, per event.
Reloading rules keeps the state of every (series, rule) whose rule id survives: an
unchanged rule keeps its detector, a changed one starts a fresh detector but keeps
its active alarm, a removed rule clears its alarms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from contract.alarms import AlarmEvent
from dataflows.alarms import AlarmKey, AlarmMachine, AlarmPolicy, Cause, Explain
from dataflows.detectors.base import Signal
from dataflows.explain import explainer
from dataflows.fresh import Fresh
from dataflows.registry import Registry
from dataflows.rule_columns import F64, I64, RuleColumns, make_rule_bank, rounds
from dataflows.rule_kinds import rule_fingerprint
from dataflows.rules import RuleSet

__all__ = ["BANK_KINDS", "CauseOf", "SeriesAlarms", "rule_fingerprint"]

BANK_KINDS = frozenset({"threshold", "range", "adaptive", "anomaly", "rate", "flatline"})
"""Series rule kinds evaluated in banks (series deadman and patterns are per event)."""

CauseOf = Callable[[int, int], Cause]
"""(row, series) -> the cause of an alarm transition at that reading."""


class SeriesAlarms:
    """The series rules of one shard (see the module docstring)."""

    def __init__(self, rules: RuleSet, registry: Registry) -> None:
        self.registry = registry
        self.rules = rules
        self._states: list[RuleColumns] = []
        self._matched = 0
        """Series matched against the rules so far (new ones are matched on demand)."""
        self.stale = 0
        """Readings skipped because they were not newer than their (series, rule)'s last."""
        self._set_rules(rules)

    # -- rules and series ---------------------------------------------------------

    def _set_rules(self, rules: RuleSet) -> None:
        self.rules = rules
        self._states = [
            RuleColumns(r, rule_fingerprint(r), make_rule_bank(r))
            for r in rules.rules
            if r.kind in BANK_KINDS
        ]
        self._matched = 0
        self.match_new_series()

    def match_new_series(self) -> None:
        """Give every series registered since the last call its slots in each rule."""
        total = self.registry.series_count
        if total == self._matched or not self._states:
            self._matched = total
            return
        for state in self._states:
            grown = np.full(total, -1, np.int32)
            grown[: len(state.slot_of_series)] = state.slot_of_series
            state.slot_of_series = grown
        names = self.registry.names
        for s in range(self._matched, total):
            key = (names.site[s], names.device[s], names.sensor[s], names.metric[s])
            for state in self._states:
                if state.rule.matches(*key):
                    state.slot_of_series[s] = len(state.series_of_slot)
                    state.series_of_slot.append(s)
        for state in self._states:
            state.fit_slots()
        self._matched = total

    @property
    def active(self) -> bool:
        """Whether any series rule exists (else :meth:`process` has nothing to do)."""
        return bool(self._states)

    # -- readings -----------------------------------------------------------------

    def process(self, fresh: Fresh) -> list[AlarmEvent]:
        """Take a batch's fresh readings (any order); return the alarm events, in time order.

        A fault reading (NaN value) reaches only ``range`` rules that watch faults.
        """
        self.match_new_series()
        series, t_us, values = fresh.series, fresh.t_us, fresh.value
        if not self._states or not len(series):
            return []

        def cause_of(row: int, _series: int) -> Cause:
            return fresh.cause(row, self.registry)

        events: list[tuple[int, int, AlarmEvent]] = []
        for state in self._states:
            slots = state.slot_of_series[series]
            watched = slots >= 0
            if not watched.any():
                continue
            rows = np.flatnonzero(watched)
            finite = ~np.isnan(values[rows])
            if state.faults and not finite.all():
                self._faults(state, rows[~finite], series, t_us, cause_of, fresh.faults, events)
            if state.bank is not None:
                self._bank_rows(state, rows[finite], slots, t_us, values, cause_of, events)
        events.sort(key=lambda e: (e[0], e[1]))
        return [e for _, _, e in events]

    def _bank_rows(
        self,
        state: RuleColumns,
        rows: I64,
        slots: npt.NDArray[np.int32],
        t_us: I64,
        values: F64,
        cause_of: CauseOf,
        events: list[tuple[int, int, AlarmEvent]],
    ) -> None:
        if not len(rows):
            return
        assert state.bank is not None
        slot = slots[rows].astype(np.int64)
        t = t_us[rows]
        order = np.lexsort((t, slot))
        rows, slot, t = rows[order], slot[order], t[order]
        for take in rounds(slot):
            s, tk = slot[take], t[take]
            fresh = tk > state.last_t[s]
            if not fresh.all():
                self.stale += int((~fresh).sum())
                take, s, tk = take[fresh], s[fresh], tk[fresh]
                if not len(take):
                    continue
            r = rows[take]
            signals = state.bank.update(s, tk, values[r])
            state.last_t[s] = tk
            need = signals.valid & (signals.active | state.busy[s])
            for i in np.flatnonzero(need).tolist():
                series_idx = state.series_of_slot[int(s[i])]
                signal = signals.signal(i, state.bank.describe(signals, i))
                row = int(r[i])
                self._step(
                    state,
                    series_idx,
                    int(tk[i]),
                    signal,
                    cause_of(row, series_idx),
                    events,
                    row,
                    explainer(state.bank, signals, i),
                )

    def _faults(
        self,
        state: RuleColumns,
        rows: I64,
        series: npt.NDArray[np.int32],
        t_us: I64,
        cause_of: CauseOf,
        faults: dict[int, str],
        events: list[tuple[int, int, AlarmEvent]],
    ) -> None:
        for row in sorted(rows.tolist(), key=lambda r: int(t_us[r])):
            s = int(series[row])
            slot = int(state.slot_of_series[s])
            t = int(t_us[row])
            if t <= state.last_t[slot]:
                self.stale += 1
                continue
            state.last_t[slot] = t
            signal = Signal(True, None, None, f"sensor fault: {faults.get(row, '')}")
            self._step(state, s, t, signal, cause_of(row, s), events, row)

    def _step(
        self,
        state: RuleColumns,
        series: int,
        t_us: int,
        signal: Signal | None,
        cause: Cause,
        events: list[tuple[int, int, AlarmEvent]],
        row: int,
        explain: Explain | None = None,
    ) -> None:
        machine = state.machines.get(series)
        if machine is None:
            machine = state.machines[series] = AlarmMachine(
                self._key(series, state.rule.id), state.rule.policy()
            )
        for event in machine.update(t_us, signal, cause, explain):
            events.append((t_us, row, event))
        state.busy[state.slot_of_series[series]] = not machine.idle

    def _key(self, series: int, rule_id: str) -> AlarmKey:
        site, device, sensor, metric = self.registry.series_key(series)
        return AlarmKey(site, device, sensor, metric, rule_id)

    # -- commands, reload ---------------------------------------------------------

    def acknowledge(self, alarm_id: str, by: str, at: Any) -> list[AlarmEvent]:
        """Acknowledge the active alarm ``alarm_id`` if it is one of these rules'."""
        for state in self._states:
            for machine in state.machines.values():
                if machine.alarm_id == alarm_id:
                    return machine.acknowledge(by, at)
        return []

    def all_machines(self) -> list[AlarmMachine]:
        """Return every alarm machine (any state)."""
        return [m for state in self._states for m in state.machines.values()]

    def machines_of(self, device: int) -> list[AlarmMachine]:
        """Return the alarm machines of ``device``'s series (any state)."""
        series_device = self.registry.series_device()
        return [
            m
            for state in self._states
            for s, m in state.machines.items()
            if int(series_device[s]) == device
        ]

    def reload(self, rules: RuleSet, now_us: int) -> list[AlarmEvent]:
        """Use new rules, keeping what survives (see the module docstring)."""
        old = {s.rule.id: s for s in self._states}
        events: list[AlarmEvent] = []
        self._set_rules(rules)
        for state in self._states:
            before = old.pop(state.rule.id, None)
            if before is None:
                continue
            keep_detector = before.fingerprint == state.fingerprint
            events.extend(self._carry(before, state, keep_detector, now_us))
        for gone in old.values():
            for machine in gone.machines.values():
                events.extend(machine.force_clear(now_us, "rule removed"))
        return events

    def _carry(
        self, before: RuleColumns, state: RuleColumns, keep_detector: bool, now_us: int
    ) -> list[AlarmEvent]:
        events: list[AlarmEvent] = []
        policy = state.rule.policy()
        for s, machine in before.machines.items():
            if s < len(state.slot_of_series) and state.slot_of_series[s] >= 0:
                machine.set_policy(policy)
                state.machines[s] = machine
                state.busy[state.slot_of_series[s]] = not machine.idle
            else:
                events.extend(machine.force_clear(now_us, "rule no longer matches"))
        if keep_detector and before.bank is not None and state.bank is not None:
            # Same definition, same matching: slots line up one to one.
            state.bank = before.bank
            state.last_t = before.last_t
        else:
            for s in before.series_of_slot:
                slot = state.slot_of_series[s] if s < len(state.slot_of_series) else -1
                if slot >= 0:
                    state.last_t[slot] = before.last_t[before.slot_of_series[s]]
        return events

    # -- eviction -----------------------------------------------------------------

    def forget(self, series: npt.NDArray[np.int64], now_us: int, why: str) -> list[AlarmEvent]:
        """Clear the alarms of ``series`` (about to be evicted), saying ``why``."""
        wanted = set(series.tolist())
        events: list[AlarmEvent] = []
        for st in self._states:
            for s, machine in st.machines.items():
                if s in wanted:
                    events.extend(machine.force_clear(now_us, why))
        return events

    def compact(self, series_map: I64) -> None:
        """Keep the slots of series that stay (``series_map``: old -> new, -1: evicted)."""
        for st in self._states:
            old = np.asarray(st.series_of_slot, np.int64)
            new = series_map[old] if len(old) else old
            slots = np.flatnonzero(new >= 0)
            if st.bank is not None:
                st.bank.take(slots)
            st.last_t = st.last_t[slots]
            st.busy = st.busy[slots]
            st.series_of_slot = new[slots].tolist()
            st.slot_of_series = np.full(int((series_map >= 0).sum()), -1, np.int32)
            st.slot_of_series[new[slots]] = np.arange(len(slots), dtype=np.int32)
            st.machines = {
                int(series_map[s]): m for s, m in st.machines.items() if series_map[s] >= 0
            }
        self._matched = int((series_map >= 0).sum())

    # -- snapshots ----------------------------------------------------------------

    def snapshot(self, *, copy: bool = True) -> dict[str, Any]:
        """Return every rule's bank, slots and machines as plain data.

        ``copy=False`` returns views of the live arrays (banks, last times): for a
        caller that serialises the snapshot before the next batch.
        """
        return {
            "rules": [
                {
                    "id": st.rule.id,
                    "fp": st.fingerprint,
                    "series": np.array(st.series_of_slot, np.int32),
                    "last_t": st.last_t.copy() if copy else st.last_t,
                    "bank": None if st.bank is None else st.bank.snapshot(copy=copy),
                    "machines": {
                        s: [list(self.registry.series_key(s)), m.snapshot()]
                        for s, m in st.machines.items()
                    },
                }
                for st in self._states
            ]
        }

    def restore(self, state: dict[str, Any], now_us: int) -> list[AlarmEvent]:
        """Load a :meth:`snapshot` under the current rules; return clears for removed rules."""
        self.match_new_series()
        events: list[AlarmEvent] = []
        by_id = {st.rule.id: st for st in self._states}
        for doc in state["rules"]:
            st = by_id.get(doc["id"])
            if st is None:
                for (site, device, sensor, metric), machine_state in doc["machines"].values():
                    key = AlarmKey(site, device, sensor, metric, doc["id"])
                    machine = AlarmMachine(key, AlarmPolicy())
                    machine.restore(machine_state)
                    events.extend(machine.force_clear(now_us, "rule removed"))
                continue
            # ``series`` is an array (a list in snapshots from before the columns).
            same = (
                doc["fp"] == st.fingerprint
                and np.asarray(doc["series"], np.int64).tolist() == st.series_of_slot
            )
            if same:
                st.last_t = np.asarray(doc["last_t"], np.int64).copy()
                if st.bank is not None and doc["bank"] is not None:
                    st.bank.restore(doc["bank"])
            policy = st.rule.policy()
            for s, (_key, machine_state) in doc["machines"].items():
                s = int(s)
                machine = AlarmMachine(self._key(s, st.rule.id), policy)
                machine.restore(machine_state)
                st.machines[s] = machine
                if s < len(st.slot_of_series) and st.slot_of_series[s] >= 0:
                    st.busy[st.slot_of_series[s]] = not machine.idle
        return events
