"""Per-sensor sampling on a monotonic, drift-free schedule.

Tick ``k`` of a sensor is due at ``start + k * interval`` (monotonic seconds). After a
read, the next tick is the first one still in the future: a read that overran, or
a process that was stopped, skips the ticks it missed and counts them instead of
sampling in a burst or slowly sliding later (``next = last + interval`` drifts by
the read time on every tick). Readings are stamped with the UTC wall clock.

A driver that raises never reaches the caller: it becomes fault readings (the last
known metrics of that sensor, with ``fault`` set) and a fault-state change that the
agent reports in its status.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from contract.events import Reading
from edge.clock import Clock
from edge.drivers.base import Driver, DriverFault, Measurement

__all__ = ["Sampler", "SensorSlot"]

log = logging.getLogger(__name__)

FaultListener = Callable[[str, str | None], None]
"""Called with ``(sensor_id, fault)`` when a sensor turns faulty, or ``None`` when it recovers."""


@dataclass(slots=True)
class SensorSlot:
    """The schedule and the counters of one sensor."""

    sensor_id: str
    driver: Driver
    interval_s: float
    start: float
    k: int = 0
    samples: int = 0
    readings: int = 0
    missed: int = 0
    faults: int = 0
    last_fault: str | None = None
    faulty: bool = False
    metrics: list[tuple[str | None, str, str]] = field(default_factory=list)

    @property
    def next_due(self) -> float:
        """Monotonic time of the next tick."""
        return self.start + self.k * self.interval_s


class Sampler:
    """Reads due sensors and returns stamped readings."""

    def __init__(self, clock: Clock, *, on_fault_change: FaultListener | None = None) -> None:
        self.clock = clock
        self.slots: dict[str, SensorSlot] = {}
        self._on_fault_change = on_fault_change

    def add(self, sensor_id: str, driver: Driver, interval_s: float) -> SensorSlot:
        """Schedule ``driver`` every ``interval_s`` seconds, first tick now."""
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        slot = SensorSlot(sensor_id, driver, interval_s, self.clock.monotonic())
        self.slots[sensor_id] = slot
        return slot

    def set_interval(self, sensor_id: str, interval_s: float) -> None:
        """Change a sensor's interval; the new schedule starts at the next old tick."""
        slot = self.slots[sensor_id]
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        if math.isclose(interval_s, slot.interval_s):
            return
        # Re-anchor so the first tick on the new schedule is the one already planned.
        slot.start, slot.k, slot.interval_s = slot.next_due, 0, interval_s

    def next_due(self) -> float | None:
        """Monotonic time of the earliest next tick."""
        return min((s.next_due for s in self.slots.values()), default=None)

    def sample_due(self) -> list[Reading]:
        """Read every sensor whose tick has come; return the stamped readings."""
        out: list[Reading] = []
        for slot in self.slots.values():
            if slot.next_due <= self.clock.monotonic():
                out.extend(self._sample(slot))
                self._advance(slot)
        return out

    def _advance(self, slot: SensorSlot) -> None:
        now = self.clock.monotonic()
        # First tick strictly after now; the ticks in between were missed.
        k_next = max(slot.k + 1, math.floor((now - slot.start) / slot.interval_s) + 1)
        slot.missed += k_next - slot.k - 1
        slot.k = k_next

    def _sample(self, slot: SensorSlot) -> list[Reading]:
        stamp = self.clock.now()
        slot.samples += 1
        try:
            measurements = slot.driver.read()
            fault = None
        except DriverFault as exc:
            measurements, fault = [], str(exc)
        except Exception as exc:  # a driver bug must not stop the other sensors
            log.exception("driver %s of sensor %s crashed", slot.driver.kind, slot.sensor_id)
            measurements, fault = [], f"driver error: {type(exc).__name__}: {exc}"
        if fault is not None:
            readings = self._fault_readings(slot, stamp, fault[:512])
        else:
            readings = [self._reading(slot, m, stamp) for m in measurements]
            if not readings:
                readings = self._fault_readings(slot, stamp, "driver returned no measurement")
            else:
                slot.metrics = [(m.channel, m.metric, m.unit) for m in measurements]
        first_fault = next((r.fault for r in readings if r.fault is not None), None)
        slot.readings += len(readings)
        if first_fault is not None:
            slot.faults += 1
            slot.last_fault = first_fault
        self._set_faulty(slot, first_fault)
        return readings

    def _reading(self, slot: SensorSlot, m: Measurement, stamp: datetime) -> Reading:
        sensor = f"{slot.sensor_id}.{m.channel}" if m.channel else slot.sensor_id
        try:
            return Reading(
                sensor=sensor,
                metric=m.metric,
                value=m.value,
                unit=m.unit,
                time=stamp,
                fault=m.fault,
            )
        except ValidationError as exc:
            # A driver gave an id or a value the contract refuses (NaN, "/" in a name...).
            reason = exc.errors(include_url=False)[0]["msg"]
            return Reading(
                sensor=slot.sensor_id,
                metric="invalid",
                unit="",
                time=stamp,
                fault=f"invalid measurement {m.metric!r}: {reason}"[:512],
            )

    def _fault_readings(self, slot: SensorSlot, stamp: datetime, fault: str) -> list[Reading]:
        metrics = slot.metrics or [(None, "fault", "")]
        return [
            Reading(
                sensor=f"{slot.sensor_id}.{channel}" if channel else slot.sensor_id,
                metric=metric,
                unit=unit,
                time=stamp,
                fault=fault,
            )
            for channel, metric, unit in metrics
        ]

    def _set_faulty(self, slot: SensorSlot, fault: str | None) -> None:
        if slot.faulty == (fault is not None):
            return
        slot.faulty = fault is not None
        if fault is not None:
            log.warning("sensor %s is faulty: %s", slot.sensor_id, fault)
        else:
            log.info("sensor %s recovered", slot.sensor_id)
        if self._on_fault_change is not None:
            self._on_fault_change(slot.sensor_id, fault)

    def close(self) -> None:
        """Close every driver."""
        for slot in self.slots.values():
            try:
                slot.driver.close()
            except Exception:  # closing must not stop the others from closing
                log.exception("closing the driver of %s failed", slot.sensor_id)
