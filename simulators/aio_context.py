"""What the devices of one asyncio fleet share: settings, counters, the backlog.

:class:`FleetContext` is built once by :class:`~simulators.aio_fleet.AsyncFleet` and
handed to every :class:`~simulators.aio_device.FleetDevice`; :class:`Backlog` counts
the events queued fleet-wide, so that a drain can wait for all of them at once.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from dataclasses import dataclass, field

from edge.mqtt import MqttSettings
from simulators.aio_report import AsyncFleetReport
from simulators.aio_shared import FleetIo
from simulators.connections import ConnectionPlan

__all__ = ["Backlog", "FleetContext"]


class Backlog:
    """Events queued and not yet settled (acknowledged, shed or discarded), fleet-wide."""

    def __init__(self) -> None:
        self.pending = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def add(self, count: int = 1) -> None:
        """Count events queued."""
        self.pending += count
        if self.idle.is_set():
            self.idle.clear()

    def settle(self, count: int = 1) -> None:
        """Count events that left the backlog."""
        self.pending -= count
        if self.pending <= 0:
            self.idle.set()


@dataclass
class FleetContext:
    """What every device of a fleet shares: settings, counters and the fleet's state."""

    settings: MqttSettings
    plan: ConnectionPlan
    report: AsyncFleetReport
    qos: int = 1
    tls: ssl.SSLContext | None = None
    backlog: Backlog = field(default_factory=Backlog)
    all_connected: asyncio.Event = field(default_factory=asyncio.Event)
    connecting: asyncio.Semaphore | None = None
    """Bounds the connection attempts in flight (see ``ConnectionPlan.max_connecting``)."""
    closing: bool = False
    in_schedule: bool = False
    rng: random.Random = field(default_factory=random.Random)
    io: FleetIo | None = None
    """Batched writes and one housekeeping sweep for every connection (see
    :mod:`simulators.aio_shared`); None leaves each client to aiomqtt."""

    def count_connected(self, delta: int) -> None:
        """Count a connection made or ended; note when every device is connected."""
        self.report.count_connected(delta, track_min=self.in_schedule)
        if self.report.connected_now == self.report.devices:
            self.all_connected.set()
