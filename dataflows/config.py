"""The stream logic's configuration: windows, lateness, dedupe, quiet period, shards."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dataflows.registry import Caps
from dataflows.windows import WindowSpec, parse_window

__all__ = ["StreamConfig"]


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """Window shapes, lateness, the quiet period and the number of shards."""

    windows: tuple[WindowSpec, ...] = (parse_window("1m"),)
    allowed_lateness_us: int = 10_000_000
    dedupe_intervals: int = 256
    quiet_us: int = 10_000_000
    """Q: how long a device, or the whole fleet, may be silent before time moves on."""
    shards: int = 8
    """Buckets the devices are hashed into; each is one keyed state in the flow. Fixed
    for the life of a recovery store (it decides which state holds which device)."""
    caps: Caps = field(default_factory=Caps)
    """Gateway-wide caps on devices and series (each shard takes its share)."""
    evict_idle_us: int | None = None
    """Forget a device (and its series) silent this long with no alarm and no open
    window; None: never."""

    @classmethod
    def from_strings(
        cls,
        windows: Iterable[str],
        allowed_lateness_s: float,
        dedupe_intervals: int = 256,
        quiet_s: float | None = None,
        shards: int = 8,
        caps: Caps | None = None,
        evict_idle_s: float | None = None,
    ) -> StreamConfig:
        """Build from settings: window specs like ``"10s"`` or ``"5m/1m"``."""
        specs = tuple(parse_window(w) for w in windows)
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"window names must be unique; got {names}")
        lateness = int(allowed_lateness_s * 1_000_000)
        quiet = lateness if quiet_s is None else int(quiet_s * 1_000_000)
        if shards < 1:
            raise ValueError(f"shards must be at least 1; got {shards}")
        evict = None if evict_idle_s is None else int(evict_idle_s * 1_000_000)
        return cls(specs, lateness, dedupe_intervals, quiet, shards, caps or Caps(), evict)
