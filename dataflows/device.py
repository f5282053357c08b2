"""Everything the gateway keeps per device: dedupe, event clock, windows, late data.

:class:`DeviceProcessor` is plain Python; the Bytewax flow keys the stream by device
and calls it from a ``stateful_batch`` step, so a device's state stays on one worker.

The event clock: the watermark follows the newest event time seen, minus the allowed
lateness, and advances with the wall clock while the device is quiet, so that the
windows of a silent device still close. A reading older than the watermark is late:
it goes to the late output (its raw value is still stored) and never reopens a
window that was already closed and written.
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
    """Window shapes and lateness for the per-device stream logic."""

    windows: tuple[WindowSpec, ...] = (parse_window("10s"), parse_window("1m"))
    allowed_lateness_us: int = 10_000_000
    dedupe_intervals: int = 256

    @classmethod
    def from_strings(
        cls, windows: Iterable[str], allowed_lateness_s: float, dedupe_intervals: int = 256
    ) -> StreamConfig:
        """Build from settings: window specs like ``"10s"`` or ``"5m/1m"``."""
        specs = tuple(parse_window(w) for w in windows)
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"window names must be unique; got {names}")
        return cls(specs, int(allowed_lateness_s * 1_000_000), dedupe_intervals)


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
        # Event clock: the watermark before lateness is wm_base + (now - sys_base).
        self._wm_base: int | None = None
        self._sys_base = 0
        if state is not None:
            self._restore(state)

    def watermark_us(self, now_us: int | None = None) -> int | None:
        """Return the current watermark (None until the first reading)."""
        if self._wm_base is None:
            return None
        now = self.clock.now_us() if now_us is None else now_us
        return self._wm_base + max(0, now - self._sys_base) - self.config.allowed_lateness_us

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
            for r in data.readings:
                if r.value is None:  # a fault carries no value to aggregate
                    continue
                t = to_us(r.time)
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
        if late:
            self.observer.late(late)
        out.extend(self.tick(now))
        return out

    def _observe(self, t_us: int, now_us: int) -> None:
        extrapolated = None if self._wm_base is None else self._wm_base + now_us - self._sys_base
        if extrapolated is None or t_us > extrapolated:
            self._wm_base, self._sys_base = t_us, now_us

    def tick(self, now_us: int | None = None) -> list[DeviceOutput]:
        """Close the windows the watermark has passed (called on a timer too)."""
        watermark = self.watermark_us(now_us)
        if watermark is None or self.site is None or self.device is None:
            return []
        return list(self.windows.close_until(watermark, self.site, self.device))

    def next_wake_us(self) -> int | None:
        """Wall-clock time at which the next open window closes (None: nothing open)."""
        end = self.windows.next_end_us()
        if end is None or self._wm_base is None:
            return None
        return end + self.config.allowed_lateness_us - self._wm_base + self._sys_base

    def snapshot(self) -> dict[str, Any]:
        """Plain data for Bytewax recovery."""
        return {
            "site": self.site,
            "device": self.device,
            "seen": self.seen.snapshot(),
            "windows": self.windows.snapshot(),
            # Store the watermark reached, not the wall-clock base: after a restart the
            # clock resumes from here, so downtime does not make re-delivered data late.
            "wm_base": None
            if self._wm_base is None
            else self.watermark_us() + self.config.allowed_lateness_us,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.site, self.device = state["site"], state["device"]
        self.seen = SequenceSet(self.config.dedupe_intervals, state["seen"])
        self.windows.restore(state["windows"])
        self._wm_base = state["wm_base"]
        self._sys_base = self.clock.now_us()
