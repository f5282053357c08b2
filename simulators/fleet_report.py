"""What a fleet run did (:class:`FleetReport`) and the label of a started anomaly.

Shared by every runner, so that a run's figures and labels do not depend on how its
devices are connected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

from simulators.anomalies import ActiveAnomaly, AnomalyKind
from simulators.labels import Label
from simulators.sim_device import SimDevice
from simulators.timebase import LagStats, Timebase

__all__ = ["FleetReport", "label_for"]


@dataclass
class FleetReport:
    """What a fleet run did."""

    devices: int
    interval_s: float
    speed: float | None
    duration_s: float
    """Simulated seconds covered."""
    wall_s: float = 0.0
    events: int = 0
    readings: int = 0
    silent: int = 0
    """Device ticks skipped by a dropout."""
    labels: int = 0
    acknowledged: int = 0
    bytes: int = 0
    stopped_early: bool = False
    error: str | None = None
    """Why the run ended early, if the broker made it (the run stops, it never drops)."""
    lag: LagStats = field(default_factory=LagStats)

    @classmethod
    def for_schedule(
        cls,
        devices: int,
        *,
        interval_s: float,
        timebase: Timebase,
        lag_tolerance_s: float | None,
    ) -> Self:
        """Check a fleet's schedule and return its empty report (of this class)."""
        if not devices:
            raise ValueError("a fleet needs at least one device")
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0; got {interval_s}")
        speed = timebase.speed or 1.0
        # One interval of wall time, but no less than 0.1 s: at high speeds an interval is
        # shorter than the scheduling jitter of the operating system.
        tolerance = lag_tolerance_s if lag_tolerance_s is not None else max(interval_s / speed, 0.1)
        return cls(
            devices=devices,
            interval_s=interval_s,
            speed=timebase.speed,
            duration_s=0.0,
            lag=LagStats(tolerance_s=tolerance),
        )

    @property
    def target_events_per_s(self) -> float | None:
        """The scheduled publishing rate on the wall clock (None when unthrottled)."""
        if self.speed is None:
            return None
        return self.devices / self.interval_s * self.speed

    @property
    def events_per_s(self) -> float:
        """The achieved event (message) rate."""
        return self.events / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def kept_up(self) -> bool:
        """Whether no item was published later than the lag tolerance."""
        return self.lag.late == 0

    def as_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {
            "devices": self.devices,
            "interval_s": self.interval_s,
            "speed": self.speed,
            "simulated_s": round(self.duration_s, 3),
            "wall_s": round(self.wall_s, 3),
            "events": self.events,
            "readings": self.readings,
            "acknowledged": self.acknowledged,
            "silent_ticks": self.silent,
            "labels": self.labels,
            "bytes": self.bytes,
            "target_events_per_s": self.target_events_per_s,
            "events_per_s": round(self.events_per_s, 1),
            "readings_per_s": round(self.readings / self.wall_s, 1) if self.wall_s else 0.0,
            "kept_up": self.kept_up,
            "stopped_early": self.stopped_early,
            "error": self.error,
            "lag": self.lag.as_dict(),
        }


def label_for(
    device: SimDevice, anomaly: ActiveAnomaly, timebase: Timebase, interval_s: float
) -> Label:
    """Return the ground-truth label of ``anomaly``, started on ``device``.

    Shared by every runner, so that the labels of a run do not depend on how its
    devices are connected.
    """
    start = timebase.event_time(anomaly.first_tick * interval_s + device.phase_s)
    end = timebase.event_time(anomaly.end_tick * interval_s + device.phase_s)
    return Label(
        site=device.site,
        device=device.device,
        metric=anomaly.metric,
        kind=anomaly.kind.value,
        start=start,
        end=end,
        magnitude=None
        if anomaly.kind in (AnomalyKind.DROPOUT, AnomalyKind.STUCK)
        else anomaly.magnitude,
    )
