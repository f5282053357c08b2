"""What a run of :class:`~simulators.aio_fleet.AsyncFleet` did: :class:`AsyncFleetReport`.

The thread runner's :class:`~simulators.fleet.FleetReport` (events, readings, labels,
lag, acknowledgements) plus the connections (ramp-up, held, lost, killed), the
queue-to-PUBACK latency of every event, and the CPU and memory of the process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simulators.fleet_report import FleetReport
from simulators.timebase import LagStats

__all__ = ["PUBACK_TOLERANCE_S", "RUNNER", "AsyncFleetReport"]

RUNNER = "asyncio"
PUBACK_TOLERANCE_S = 0.25
"""Publish latencies above this count as slow (the issue's p99 target)."""


@dataclass
class AsyncFleetReport(FleetReport):
    """The fleet figures plus connections, publish latency, CPU and memory."""

    runner: str = RUNNER
    phase: str = "ramp"
    """``ramp``, ``schedule``, ``drain``, ``close`` or ``done``."""
    ramp_s: float = 0.0
    """Wall seconds from the first connection attempt to the start of the schedule."""
    connected_after_ramp: int = 0
    connected_now: int = 0
    connected_peak: int = 0
    connected_min: int | None = None
    """Fewest devices connected during the schedule."""
    connected_at_end: int = 0
    """Connected when the schedule ended (before the drain and the goodbyes)."""
    connect_attempts: int = 0
    connect_failures: int = 0
    last_connect_error: str | None = None
    connections_lost: int = 0
    reconnects: int = 0
    births: int = 0
    goodbyes: int = 0
    killed: int = 0
    """Devices whose connection was killed on purpose (``drop_fraction``)."""
    killed_ticks: int = 0
    """Ticks with readings that a killed device did not send."""
    discarded: int = 0
    """Queued events lost with a killed device."""
    shed: int = 0
    """Events dropped, oldest first, from a full outgoing queue."""
    stranded: int = 0
    """Events still queued at the end on devices that never connected (not waited for)."""
    label_errors: int = 0
    puback: LagStats = field(default_factory=lambda: LagStats(tolerance_s=PUBACK_TOLERANCE_S))
    """Queue-to-PUBACK latency of every acknowledged event: from the moment the schedule
    queued it (not when it was due: that is ``lag``) to its PUBACK."""
    wire: LagStats = field(default_factory=lambda: LagStats(tolerance_s=PUBACK_TOLERANCE_S))
    """Publish-to-PUBACK latency: from the PUBLISH handed to paho (after any wait in the
    device's queue behind the event in flight) to its PUBACK."""
    steady: dict[str, float] = field(default_factory=dict)
    """Wall, CPU seconds and CPU share of the schedule phase (ramp and drain excluded)."""
    ramp_usage: dict[str, float] = field(default_factory=dict)
    peak_rss_bytes: int = 0

    def count_connected(self, delta: int, *, track_min: bool) -> None:
        """Count a connection made (+1) or ended (-1)."""
        self.connected_now += delta
        now = self.connected_now
        if now > self.connected_peak:
            self.connected_peak = now
        if track_min and (self.connected_min is None or now < self.connected_min):
            self.connected_min = now

    def as_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {
            **super().as_dict(),
            "runner": self.runner,
            "connections": {
                "devices": self.devices,
                "ramp_s": round(self.ramp_s, 3),
                "after_ramp": self.connected_after_ramp,
                "peak": self.connected_peak,
                "min_during_schedule": self.connected_min,
                "at_end": self.connected_at_end,
                "attempts": self.connect_attempts,
                "failures": self.connect_failures,
                "last_failure": self.last_connect_error,
                "lost": self.connections_lost,
                "reconnects": self.reconnects,
                "births": self.births,
                "goodbyes": self.goodbyes,
                "killed": self.killed,
            },
            "killed_ticks": self.killed_ticks,
            "discarded": self.discarded,
            "shed": self.shed,
            "stranded": self.stranded,
            "label_errors": self.label_errors,
            "puback": self.puback.as_dict(),
            "publish_to_puback": self.wire.as_dict(),
            "steady": self.steady,
            "ramp_usage": self.ramp_usage,
            "peak_rss_bytes": self.peak_rss_bytes,
        }
