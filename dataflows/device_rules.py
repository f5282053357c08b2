"""The per-device rules of one shard: deadman, offline, patterns, aggregates, commands.

These rules are about devices and events, not readings, so they stay per event: one
:class:`~dataflows.detection.DeviceDetector` per device that needs one, called once per
telemetry event (the device spoke: deadman and offline conditions end), per status
event, per acknowledgement and per closed window with an aggregate rule. Rules that do
take readings one by one (series deadman, device patterns) see only the series they
match. Deadman timing is kept in arrays (each device's shortest silence and whether it
is armed), so finding the next due device costs one numpy call, not a walk over them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from contract.alarms import AlarmEvent
from dataflows.alarms import Cause
from dataflows.columns import AggregateColumns
from dataflows.detection import DeviceDetector
from dataflows.detectors import DeadmanDetector
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
        self._silence: list[int] = []
        """Per device: the shortest deadman silence watching it (0: none)."""
        self._armed: list[bool] = []
        """Per device: a deadman watches it and none of its deadman alarms is active."""

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
        for dev in range(len(self._silence), reg.device_count):
            silences = [
                r.silence
                for r in self.rules.for_device(reg.sites[dev], reg.devices[dev])
                if r.kind == "deadman"
            ]
            self._silence.append(min(silences) if silences else 0)
            self._armed.append(bool(silences))

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
                reg.sites[dev], reg.devices[dev], self.rules, series_banks=True
            )
        return det

    def _rearm(self, dev: int, det: DeviceDetector) -> None:
        self._armed[dev] = det.deadman_armed()

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
        for k, dev in enumerate(fresh.devices):
            if not self._needs_detector(dev):
                continue
            det = self.detector(dev)
            cause = Cause(fresh.event_ids[k], None, fresh.traceparents[k])
            out.extend(det.alive(fresh.received_us[k], cause))
            self._rearm(dev, det)
        return out

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
        if not any(self._silence):
            return None
        silence = np.asarray(self._silence, np.int64)
        last = np.asarray(self.registry.last_arrival_us, np.int64)
        armed = np.asarray(self._armed, np.bool_) & (silence > 0) & (last != NONE)
        return np.where(armed, last + silence, NEVER)

    def tick(self, now_us: int) -> list[AlarmEvent]:
        """Run the deadman checks that are due."""
        due = self.due()
        if due is None or not len(due):
            return []
        out: list[AlarmEvent] = []
        for dev in np.flatnonzero(due <= now_us).tolist():
            det = self.detector(dev)
            out.extend(det.tick(now_us))
            self._rearm(dev, det)
        return out

    # -- rules, snapshots ---------------------------------------------------------

    def reload(self, rules: RuleSet, now_us: int) -> list[AlarmEvent]:
        """Use new rules; every device detector keeps what survives."""
        self.rules = rules
        out: list[AlarmEvent] = []
        for det in self.detectors.values():
            out.extend(det.reload(rules, now_us))
        # Matching changed: recompute which series feed per-event rules and deadman.
        self._wants, self._silence, self._armed = [], [], []
        self.grow()
        for dev, det in self.detectors.items():
            self._rearm(dev, det)
        return out

    def snapshot(self) -> dict[int, Any]:
        """Return every device detector's state as plain data."""
        return {dev: det.snapshot() for dev, det in self.detectors.items()}

    def restore(self, state: dict[int, Any], now_us: int) -> None:
        """Load a :meth:`snapshot`; deadman silence counts from the restart (``now_us``)."""
        self.grow()
        for dev, doc in state.items():
            det = DeviceDetector(
                doc["site"], doc["device"], self.rules, state=doc, series_banks=True
            )
            self.detectors[int(dev)] = det
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
