"""Event time: clocks, conversions, and the per-device watermark.

A device's watermark is the newest event time it reported minus the allowed lateness
L. So that the windows of a device that goes quiet still close, a device silent for
longer than a quiet period Q (wall clock) also follows the *fleet clock*: the newest
event time across every device this process sees, minus L and Q. When the whole fleet
is quiet for Q, the fleet clock advances with the wall clock. Following the fleet
rather than the wall clock keeps a backlog (a broker queue drained after a restart, a
replay) on time, since event time then lags the wall clock for every device alike. A
reading older than its device's watermark is late: it goes to the late output (its
raw value is still stored) and never reopens a window that was already closed. A
watermark never moves back.

Times are integer microseconds since the Unix epoch (UTC). Device clocks live in the
shard's :class:`~dataflows.registry.Registry` (``NONE`` before the first reading).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

import numpy as np
import numpy.typing as npt

from dataflows.config import StreamConfig
from dataflows.registry import NONE, Registry

__all__ = [
    "Clock",
    "FakeClock",
    "FleetClock",
    "SystemClock",
    "device_watermark",
    "device_watermarks",
    "from_us",
    "observe_messages",
    "to_us",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(when: datetime) -> int:
    """Microseconds since the Unix epoch, exactly."""
    return (when - _EPOCH) // _US


def from_us(t_us: int) -> datetime:
    """Return an aware UTC datetime from microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=t_us)


class Clock(Protocol):
    """Wall-clock time in microseconds since the epoch (UTC)."""

    def now_us(self) -> int:
        """Return the current time."""


class SystemClock:
    """The real clock."""

    def now_us(self) -> int:
        """Return the current time."""
        return time.time_ns() // 1000


class FakeClock:
    """A clock that moves only when told to (for tests)."""

    def __init__(self, now_us: int = 0) -> None:
        self.t = now_us

    def now_us(self) -> int:
        """Return the fake time."""
        return self.t

    def advance(self, seconds: float) -> None:
        """Move forward."""
        self.t += int(seconds * 1_000_000)


class FleetClock:
    """Event-time progress across every device of this process.

    Shared by the shards of a process (worker threads only assign ints). Never ahead of
    the wall clock, so one device with a clock set in the future cannot close everyone
    else's windows early.
    """

    def __init__(self, quiet_us: int = 10_000_000) -> None:
        self.quiet_us = quiet_us
        self.max_event_us: int | None = None
        self.last_arrival_us = 0

    def observe(self, t_us: int, now_us: int) -> None:
        """Record an event time seen at wall time ``now_us``."""
        if self.max_event_us is None or t_us > self.max_event_us:
            self.max_event_us = t_us
        self.last_arrival_us = now_us

    def time_us(self, now_us: int) -> int | None:
        """Return the fleet's event time now (None before any reading)."""
        if self.max_event_us is None:
            return None
        silent = now_us - self.last_arrival_us - self.quiet_us
        return min(now_us, self.max_event_us + max(0, silent))


def device_watermark(
    reg: Registry, device: int, now_us: int, config: StreamConfig, fleet: FleetClock
) -> int:
    """Return (and record) device ``device``'s watermark now; ``NONE`` before any reading."""
    wm = reg.last_wm_us[device]
    newest = reg.max_event_us[device]
    if newest != NONE:
        own = newest - config.allowed_lateness_us
        if own > wm:
            wm = own
    arrived = reg.last_arrival_us[device]
    if wm != NONE and arrived != NONE and now_us - arrived > config.quiet_us:
        fleet_t = fleet.time_us(now_us)
        if fleet_t is not None:
            follow = fleet_t - config.allowed_lateness_us - config.quiet_us
            if follow > wm:
                wm = follow
    reg.last_wm_us[device] = wm
    return wm


def device_watermarks(
    reg: Registry, now_us: int, config: StreamConfig, fleet: FleetClock
) -> npt.NDArray[np.int64]:
    """Return (and record) every device's watermark now, as an array (``NONE``: none)."""
    if not reg.devices:
        return np.zeros(0, np.int64)
    wm = np.asarray(reg.last_wm_us, dtype=np.int64)
    newest = np.asarray(reg.max_event_us, dtype=np.int64)
    own = np.where(newest != NONE, newest - config.allowed_lateness_us, NONE)
    wm = np.maximum(wm, own)
    fleet_t = fleet.time_us(now_us)
    if fleet_t is not None:
        arrived = np.asarray(reg.last_arrival_us, dtype=np.int64)
        quiet = (wm != NONE) & (arrived != NONE) & (now_us - arrived > config.quiet_us)
        follow = fleet_t - config.allowed_lateness_us - config.quiet_us
        wm = np.where(quiet & (follow > wm), follow, wm)
    reg.last_wm_us = wm.tolist()
    return wm


def observe_messages(
    reg: Registry,
    devices: list[int],
    newest: list[int],
    now_us: int,
    config: StreamConfig,
    fleet: FleetClock,
) -> list[int]:
    """Move the event clocks message by message; return each message's watermark.

    Message ``i`` came from ``devices[i]`` with ``newest[i]`` its newest reading time
    (``NONE``: no value). Each is judged against its device's watermark as it was
    before it; a reading older than that watermark is late and does not move the clocks.
    """
    wm_msg = []
    newest_seen = reg.newest_seen_us
    for dev, new in zip(devices, newest, strict=True):
        wm = device_watermark(reg, dev, now_us, config, fleet)
        wm_msg.append(wm)
        if new > newest_seen[dev]:
            newest_seen[dev] = new
        if new != NONE and new >= wm:
            if new > reg.max_event_us[dev]:
                reg.max_event_us[dev] = new
            fleet.observe(new, now_us)
    for dev in set(devices):
        reg.last_arrival_us[dev] = now_us
    return wm_msg
