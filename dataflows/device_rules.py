"""The per-device rules of one shard: deadman, offline, patterns, aggregates, commands.

These rules are about devices and events, not readings, so they stay per event: one
:class:`~dataflows.detection.DeviceDetector` per device that needs one, called once per
telemetry event (the device spoke: deadman and offline conditions end), per status
event, per acknowledgement and per closed window with an aggregate rule. Rules that do
take readings one by one (series deadman, device patterns) see only the series they
match. Deadman timing is kept in arrays, so finding the next due device costs a few
numpy calls, not a walk over them: per device, the shortest fixed silence, the
parameters of its ``silence = "auto"`` rule, whether a deadman may raise, and its
cadence (:class:`~dataflows.cadence.CadenceArrays`: the last intervals between its
messages and their median, taken per batch with array operations). A device's silence
is the shortest of its fixed silence and ``factor`` x its median interval (at least the
rule's ``min_silence``; ``initial_silence`` before the first interval).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from contract.alarms import AlarmEvent
from dataflows.alarms import Cause
from dataflows.cadence import CadenceArrays, auto_silence_us
from dataflows.columns import AggregateColumns
from dataflows.detection import DeviceDetector
from dataflows.detectors import DeadmanDetector
from dataflows.detectors.deadman import CadenceView
from dataflows.device_slots_state import device_docs, slot_columns
from dataflows.fresh import Fresh
from dataflows.ingest import CommandIn, StatusIn
from dataflows.registry import NONE, Registry
from dataflows.rules import RuleSet
from dataflows.series_alarms import SeriesAlarms
from dataflows.windows import aggregates_of

__all__ = ["NEVER", "DeviceRules"]

NEVER = np.iinfo(np.int64).max


class DeviceRules:
    """Device-level rules of a shard's devices (see the module docstring)."""

    def __init__(self, rules: RuleSet, registry: Registry) -> None:
        self.rules = rules
        self.registry = registry
        self.detectors: dict[int, DeviceDetector] = {}
        self._wants: list[bool] = []
        """Per series: whether its readings also feed a per-event device rule."""
        self.cadence = CadenceArrays()
        """Per device: the intervals between its messages (auto silence)."""
        self._fixed = np.zeros(0, np.int64)
        """Per device: the shortest fixed deadman silence watching it (0: none)."""
        self._factor = np.zeros(0, np.float64)
        """Per device: the factor of its auto deadman (0: none)."""
        self._floor = np.zeros(0, np.int64)
        self._initial = np.zeros(0, np.int64)
        self._armed = np.zeros(0, np.bool_)
        """Per device: a deadman watches it and may raise (none of its alarms is active,
        or the active one is held and its silence ended)."""

    # -- tables -------------------------------------------------------------------

    @property
    def per_event_series_rules(self) -> bool:
        """Whether any rule takes readings one by one (series deadman, device patterns)."""
        return any(
            (r.kind == "deadman" and r.scope == "series")
            or (r.kind == "pattern" and r.scope == "device")
            for r in self.rules.rules
        )

    @property
    def site_patterns(self) -> bool:
        """Whether a site-wide pattern rule exists (the flow then feeds a site step)."""
        return any(r.kind == "pattern" and r.scope == "site" for r in self.rules.rules)

    def grow(self) -> None:
        """Extend the per-series and per-device tables to what the registry holds."""
        reg = self.registry
        if self.per_event_series_rules:
            for s in range(len(self._wants), reg.series_count):
                site, device, sensor, metric = reg.series_key(s)
                dev = reg.device_index[f"{site}/{device}"]
                self._wants.append(
                    self._needs_detector(dev) and self.detector(dev).wants_readings(sensor, metric)
                )
        else:  # the common case: no rule needs readings one by one
            self._wants.extend([False] * (reg.series_count - len(self._wants)))
        first = len(self._armed)
        new = reg.device_count - first
        if new <= 0:
            return
        fixed, factor = np.zeros(new, np.int64), np.zeros(new, np.float64)
        floor, initial = np.zeros(new, np.int64), np.zeros(new, np.int64)
        armed = np.zeros(new, np.bool_)
        for i, dev in enumerate(range(first, reg.device_count)):
            rules = [
                r
                for r in self.rules.for_device(reg.sites[dev], reg.devices[dev])
                if r.kind == "deadman"
            ]
            armed[i] = bool(rules)
            fixed_rules = [r.silence for r in rules if not r.auto]
            fixed[i] = min(fixed_rules) if fixed_rules else 0
            auto = [r for r in rules if r.auto]
            if auto:  # the smallest of each parameter: the shortest silence of them all
                factor[i] = min(r.factor for r in auto)
                floor[i] = min(r.min_silence for r in auto)
                initial[i] = min(r.initial_silence for r in auto)
        self._fixed = np.concatenate((self._fixed, fixed))
        self._factor = np.concatenate((self._factor, factor))
        self._floor = np.concatenate((self._floor, floor))
        self._initial = np.concatenate((self._initial, initial))
        self._armed = np.concatenate((self._armed, armed))
        self.cadence.grow(reg.device_count)

    def _needs_detector(self, dev: int) -> bool:
        reg = self.registry
        return bool(self.rules.for_device(reg.sites[dev], reg.devices[dev])) or any(
            r.kind == "deadman" and r.scope == "series" for r in self.rules.rules
        )

    def detector(self, dev: int) -> DeviceDetector:
        """Return device ``dev``'s detector, built on first need."""
        det = self.detectors.get(dev)
        if det is None:
            reg = self.registry
            det = self.detectors[dev] = DeviceDetector(
                reg.sites[dev], reg.devices[dev], self.rules, series_banks=True, learn_cadence=False
            )
        return det

    def _rearm(self, dev: int, det: DeviceDetector) -> None:
        self._armed[dev] = det.deadman_armed()

    def _rebuild_tables(self) -> None:
        """Rebuild the per-device and per-series tables from the rules and the registry.

        The device detectors and the cadence carry the state; the tables are derived.
        """
        self._wants = []
        self._fixed, self._factor = np.zeros(0, np.int64), np.zeros(0, np.float64)
        self._floor, self._initial = np.zeros(0, np.int64), np.zeros(0, np.int64)
        self._armed = np.zeros(0, np.bool_)
        self.grow()
        for dev, det in self.detectors.items():
            self._rearm(dev, det)

    # -- inputs -------------------------------------------------------------------

    def telemetry(self, fresh: Fresh) -> list[AlarmEvent]:
        """Take a batch's fresh telemetry: per-event readings, then each event's arrival."""
        out: list[AlarmEvent] = []
        if self.per_event_series_rules and len(fresh.series):
            wants = np.asarray(self._wants, np.bool_)
            rows = np.flatnonzero(wants[fresh.series])
            rows = rows[np.lexsort((fresh.t_us[rows], fresh.msg_of_row[rows]))]
            names = self.registry.names
            for row in rows.tolist():
                s = int(fresh.series[row])
                det = self.detector(fresh.devices[int(fresh.msg_of_row[row])])
                v = float(fresh.value[row])
                out.extend(
                    det.reading(
                        names.sensor[s],
                        names.metric[s],
                        None if v != v else v,
                        fresh.faults.get(row),
                        int(fresh.t_us[row]),
                        fresh.cause(row, self.registry),
                    )
                )
        newest = self._observe(fresh)
        for k, dev in enumerate(fresh.devices):
            if not self._needs_detector(dev):
                continue
            det = self.detector(dev)
            cause = Cause(fresh.event_ids[k], None, fresh.traceparents[k])
            cadence = partial(self.cadence_of, dev)  # asked only if an alarm may end
            out.extend(det.alive(fresh.received_us[k], cause, newest[k], cadence))
            self._rearm(dev, det)
        return out

    def _observe(self, fresh: Fresh) -> list[int | None]:
        """Learn the cadence of the batch's devices; return each message's newest time."""
        if not len(fresh.devices):
            return []
        received = np.asarray(fresh.received_us, np.int64)
        newest = received.copy()
        counts = fresh.counts
        has = counts > 0
        if len(fresh.t_us) and has.any():
            newest[has] = np.maximum.reduceat(fresh.t_us, fresh.starts[has])
        if self._factor.any():
            self.grow()
            self.cadence.observe(np.asarray(fresh.devices, np.int64), received, newest)
        pairs = zip(has.tolist(), newest.tolist(), strict=True)
        return [int(t) if h else None for h, t in pairs]

    def cadence_of(self, dev: int) -> CadenceView | None:
        """Device ``dev``'s learnt cadence (None when no auto deadman watches it)."""
        if dev >= len(self._factor) or not self._factor[dev]:
            return None
        c = self.cadence
        return CadenceView(float(c.median_us[dev]), int(c.count[dev]))

    def silences(self) -> npt.NDArray[np.int64]:
        """Each device's deadman silence now (0: no deadman watches it)."""
        n = len(self._armed)
        auto = self._factor > 0
        silence = self._fixed.copy()
        if auto.any():
            c = self.cadence
            learnt = auto_silence_us(
                c.median_us[:n],
                c.count[:n],
                factor=self._factor,
                floor_us=self._floor,
                initial_us=self._initial,
            )
            silence = np.where(
                auto, np.where(silence > 0, np.minimum(silence, learnt), learnt), silence
            )
        return silence

    def event(self, event: StatusIn | CommandIn, series: SeriesAlarms) -> list[AlarmEvent]:
        """Take a status or command message (per event)."""
        if isinstance(event, StatusIn):
            data = event.event.data
            dev = self.registry.device(data.site, data.device)
            self.grow()
            det = self.detector(dev)
            events = det.process([event.arrival_event()])
            self._rearm(dev, det)
            return events
        cmd = event.command.data
        dev = self.registry.device(cmd.site, cmd.device)
        self.grow()
        acked = series.acknowledge(cmd.alarm_id, cmd.by, event.command.time)
        if not acked:
            acked = self.detector(dev).acknowledge(cmd.alarm_id, cmd.by, event.command.time)
        return acked

    def aggregates(self, closed: AggregateColumns) -> list[AlarmEvent]:
        """Take closed windows (only aggregate rules look at them)."""
        if not any(r.kind == "aggregate" for r in self.rules.rules):
            return []
        out: list[AlarmEvent] = []
        for agg in aggregates_of(closed, self.registry.names):
            dev = self.registry.find_device(agg.site, agg.device)
            if dev is not None:
                out.extend(self.detector(dev).on_aggregate(agg))
        return out

    # -- time ---------------------------------------------------------------------

    def due(self) -> npt.NDArray[np.int64] | None:
        """Each device's next deadman check (``NEVER``: none), or None without deadman."""
        if not (self._fixed.any() or self._factor.any()):
            return None
        silence = self.silences()
        last = np.asarray(self.registry.last_arrival_us[: len(silence)], np.int64)
        armed = self._armed & (silence > 0) & (last != NONE)
        return np.where(armed, last + silence, NEVER)

    def tick(self, now_us: int) -> list[AlarmEvent]:
        """Run the deadman checks that are due."""
        due = self.due()
        if due is None or not len(due):
            return []
        out: list[AlarmEvent] = []
        for dev in np.flatnonzero(due <= now_us).tolist():
            det = self.detector(dev)
            out.extend(det.tick(now_us, self.cadence_of(dev)))
            self._rearm(dev, det)
        return out

    # -- eviction -----------------------------------------------------------------

    def forget(self, devices: npt.NDArray[np.int64], now_us: int, why: str) -> list[AlarmEvent]:
        """Clear the alarms of ``devices`` (about to be evicted), saying ``why``."""
        events: list[AlarmEvent] = []
        for dev in devices.tolist():
            det = self.detectors.get(dev)
            if det is not None:
                for slot in det.slots.values():
                    events.extend(slot.machine.force_clear(now_us, why))
        return events

    def compact(self, dev_map: npt.NDArray[np.int64]) -> None:
        """Keep the devices that stay (``dev_map``: old -> new, -1: evicted), renumbered.

        Call after the registry's own :meth:`~dataflows.registry.Registry.compact`.
        """
        self.detectors = {
            int(dev_map[d]): det for d, det in self.detectors.items() if dev_map[d] >= 0
        }
        self.cadence.take(np.flatnonzero(dev_map >= 0))
        # The per-device and per-series tables follow the registry.
        self._rebuild_tables()

    # -- rules, snapshots ---------------------------------------------------------

    def reload(self, rules: RuleSet, now_us: int) -> list[AlarmEvent]:
        """Use new rules; every device detector keeps what survives."""
        self.rules = rules
        out: list[AlarmEvent] = []
        for det in self.detectors.values():
            out.extend(det.reload(rules, now_us))
        # Matching changed: recompute which series feed per-event rules and deadman.
        self._rebuild_tables()
        return out

    def snapshot(self, *, copy: bool = True) -> dict[str, Any]:
        """Return every device detector's state and the learnt cadence as plain data.

        Columns, not a document per device (:mod:`dataflows.device_slots_state`); the
        cadence of every device is three arrays (``copy=False``: views of the live
        ones, for a caller that serialises them before the next batch).
        """
        return {
            "detectors": slot_columns(self.detectors),
            "cadence": self.cadence.snapshot(copy=copy),
        }

    def restore(self, state: dict[Any, Any], now_us: int) -> None:
        """Load a :meth:`snapshot`; deadman silence counts from the restart (``now_us``).

        A snapshot from before the columns (device -> document, with the device's own
        ``cadence``) loads too.
        """
        self.grow()
        if "detectors" in state:
            docs, cadence = device_docs(state["detectors"]), state["cadence"]
        else:
            docs, cadence = state, None
        if cadence is not None:
            self.cadence.restore(cadence)
        for dev, doc in docs.items():
            det = DeviceDetector(
                doc["site"],
                doc["device"],
                self.rules,
                state=doc,
                series_banks=True,
                learn_cadence=False,
            )
            self.detectors[int(dev)] = det
            if cadence is None:
                # The intervals stay; the downtime is no interval of the device's.
                self.cadence.restore_of(int(dev), doc.get("cadence"))
            # Silence is measured on the arrival clock and the gateway was down: it
            # counts from the restart, or every device would raise a deadman alarm at
            # once after a downtime longer than its silence.
            for slot in det.slots.values():
                detector = slot.detector
                if (
                    isinstance(detector, DeadmanDetector)
                    and not slot.machine.active
                    and detector.last_us is not None
                    and detector.last_us < now_us
                ):
                    detector.last_us = now_us
            self._rearm(int(dev), det)
