"""Everything the gateway keeps per device: dedupe, event clock, windows, late data.

:class:`DeviceProcessor` is plain Python; the Bytewax flow keys the stream by device
and calls it from a ``stateful_batch`` step, so a device's state stays on one worker.

The event clock. A device's watermark is the newest event time it reported minus the
allowed lateness L. So that the windows of a device that goes quiet still close, a
device silent for longer than a quiet period Q (wall clock) also follows the *fleet
clock*: the newest event time across all devices this process sees, minus L and Q.
When the whole fleet is quiet for Q, the fleet clock advances with the wall clock.
Following the fleet rather than the wall clock keeps a backlog (a broker queue
drained after a restart, a replay) on time, since event time then lags the wall clock
for every device alike. A reading older than its device's watermark is late: it goes
to the late output (its raw value is still stored) and never reopens a window that
was already closed and written.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from dataflows.dedupe import SequenceSet
from dataflows.ingest import Accepted
from dataflows.observer import NullObserver, Observer
from dataflows.windows import Aggregate, SeriesWindows, WindowSpec, parse_window

__all__ = [
    "Clock",
    "DeviceOutput",
    "DeviceProcessor",
    "FakeClock",
    "FleetClock",
    "LateReading",
    "StreamConfig",
    "SystemClock",
    "to_us",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(when: datetime) -> int:
    """Microseconds since the Unix epoch, exactly."""
    return (when - _EPOCH) // _US


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


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """Window shapes, lateness and the quiet period for the per-device stream logic."""

    windows: tuple[WindowSpec, ...] = (parse_window("10s"), parse_window("1m"))
    allowed_lateness_us: int = 10_000_000
    dedupe_intervals: int = 256
    quiet_us: int = 10_000_000
    """Q: how long a device, or the whole fleet, may be silent before time moves on."""

    @classmethod
    def from_strings(
        cls,
        windows: Iterable[str],
        allowed_lateness_s: float,
        dedupe_intervals: int = 256,
        quiet_s: float | None = None,
    ) -> StreamConfig:
        """Build from settings: window specs like ``"10s"`` or ``"5m/1m"``."""
        specs = tuple(parse_window(w) for w in windows)
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"window names must be unique; got {names}")
        lateness = int(allowed_lateness_s * 1_000_000)
        quiet = lateness if quiet_s is None else int(quiet_s * 1_000_000)
        return cls(specs, lateness, dedupe_intervals, quiet)


class FleetClock:
    """Event-time progress across every device of this process.

    Shared by the device processors of a process (worker threads only assign ints).
    Never ahead of the wall clock, so one device with a clock set in the future cannot
    close everyone else's windows early.
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


@dataclass(frozen=True, slots=True)
class LateReading:
    """A reading that arrived after the windows it belonged to had closed."""

    site: str
    device: str
    sensor: str
    metric: str
    value: float
    t_us: int
    seq: int
    watermark_us: int
    event_id: str


DeviceOutput = Accepted | Aggregate | LateReading
"""What the device step emits: fresh (deduplicated) telemetry, aggregates, late readings."""


class DeviceProcessor:
    """The state and logic of one device."""

    def __init__(
        self,
        site: str | None,
        device: str | None,
        config: StreamConfig,
        *,
        clock: Clock | None = None,
        fleet: FleetClock | None = None,
        observer: Observer | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.site = site
        self.device = device
        self.config = config
        self.clock = clock or SystemClock()
        self.observer = observer or NullObserver()
        self.seen = SequenceSet(config.dedupe_intervals)
        self.windows = SeriesWindows(config.windows)
        self.fleet = fleet or FleetClock(config.quiet_us)
        self._max_event: int | None = None
        self._last_wm: int | None = None
        self._last_arrival: int | None = None
        if state is not None:
            self._restore(state)

    def watermark_us(self, now_us: int | None = None) -> int | None:
        """Return the current watermark (None until the first reading)."""
        now = self.clock.now_us() if now_us is None else now_us
        cfg = self.config
        wm = self._last_wm
        if self._max_event is not None:
            own = self._max_event - cfg.allowed_lateness_us
            wm = own if wm is None or own > wm else wm
        quiet = self._last_arrival is not None and now - self._last_arrival > cfg.quiet_us
        if quiet and wm is not None:
            fleet = self.fleet.time_us(now)
            if fleet is not None:
                follow = fleet - cfg.allowed_lateness_us - cfg.quiet_us
                wm = follow if follow > wm else wm
        self._last_wm = wm  # never moves back
        return wm

    def process(self, batch: Iterable[Accepted]) -> list[DeviceOutput]:
        """Take a batch of this device's telemetry; return what to store."""
        now = self.clock.now_us()
        out: list[DeviceOutput] = []
        late = 0
        for item in batch:
            data = item.event.data
            if self.device is None:  # Bytewax builds the logic before it sees the key
                self.site, self.device = data.site, data.device
            if not self.seen.add(data.sequence):
                self.observer.duplicate(len(data.readings))
                continue
            out.append(item)
            watermark = self.watermark_us(now)
            newest = None
            last_time, t = None, 0
            for r in data.readings:
                if r.value is None:  # a fault carries no value to aggregate
                    continue
                if r.time != last_time:  # readings of one message often share instants
                    last_time, t = r.time, to_us(r.time)
                if watermark is not None and t < watermark:
                    late += 1
                    out.append(
                        LateReading(
                            data.site,
                            data.device,
                            r.sensor,
                            r.metric,
                            r.value,
                            t,
                            data.sequence,
                            watermark,
                            item.event.id,
                        )
                    )
                    continue
                self.windows.add(r.sensor, r.metric, t, r.value)
                if newest is None or t > newest:
                    newest = t
            if newest is not None:
                self._observe(newest, now)
        self._last_arrival = now
        if late:
            self.observer.late(late)
        out.extend(self.tick(now))
        return out

    def _observe(self, t_us: int, now_us: int) -> None:
        if self._max_event is None or t_us > self._max_event:
            self._max_event = t_us
        self.fleet.observe(t_us, now_us)

    def tick(self, now_us: int | None = None) -> list[DeviceOutput]:
        """Close the windows the watermark has passed (called on a timer too)."""
        watermark = self.watermark_us(now_us)
        if watermark is None or self.site is None or self.device is None:
            return []
        return list(self.windows.close_until(watermark, self.site, self.device))

    def next_wake_us(self, now_us: int | None = None) -> int | None:
        """Return when to look again at the open windows (None: nothing open).

        The estimate assumes the fleet clock keeps pace with the wall clock; if it
        lags, the check finds nothing to close and re-arms, at most once a second.
        """
        end = self.windows.next_end_us()
        if end is None:
            return None
        now = self.clock.now_us() if now_us is None else now_us
        cfg = self.config
        fleet = self.fleet.time_us(now)
        fleet = now if fleet is None else fleet
        wait = end + cfg.allowed_lateness_us + cfg.quiet_us - fleet
        if self._last_arrival is not None:  # not before the device counts as quiet
            wait = max(wait, self._last_arrival + cfg.quiet_us - now)
        return now + min(max(wait, 1_000_000), 60_000_000)

    def snapshot(self) -> dict[str, Any]:
        """Plain data for Bytewax recovery."""
        return {
            "site": self.site,
            "device": self.device,
            "seen": self.seen.snapshot(),
            "windows": self.windows.snapshot(),
            # Event time only: downtime does not move it, so data the broker re-delivers
            # after a restart is not late.
            "max_event": self._max_event,
            "last_wm": self._last_wm,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.site, self.device = state["site"], state["device"]
        self.seen = SequenceSet(self.config.dedupe_intervals, state["seen"])
        self.windows.restore(state["windows"])
        self._max_event = state["max_event"]
        self._last_wm = state["last_wm"]
        # Quiet time starts at the restart, not at the last reading before the crash.
        self._last_arrival = self.clock.now_us()
