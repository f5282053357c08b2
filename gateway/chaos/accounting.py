"""What a chaos run delivered, per device: published, stored, lost, duplicates.

Ground truth comes from the edge: an outbox numbers a device's events 0, 1, 2, ... in the
transaction that stores them, so ``next_sequence`` is the number of events the device
ever made durable, and each carries ``readings_per_event`` readings, except possibly the
last (a shutdown flushes a partial batch). InfluxDB says what arrived: raw readings
(``seq`` stored with each), the distinct sequences among them, and the ``count`` of every
closed window. Raw points cannot be stored twice (same series and time overwrite), so a
duplicate shows only where dedupe failed and a reading was folded twice: the windows'
counts, plus the late readings that bypass windows, then exceed the stored readings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DeviceTally", "totals"]


@dataclass(frozen=True, slots=True)
class DeviceTally:
    """One device's figures."""

    device: str
    events: int
    """Events the outbox numbered (published, durable at the edge)."""
    dropped: int
    """Events the outbox's disk budget dropped (counted by the edge; expected 0)."""
    pending: int
    """Events still in the outbox at the end (expected 0 after the drain)."""
    last_event_readings: int | None
    """Readings of the last event as stored (None: not stored)."""
    stored: int
    """Raw readings in InfluxDB."""
    stored_events: int
    """Distinct sequences among them."""
    windowed: int
    """Sum of the ``count`` of every closed window."""
    late: int
    """Readings that arrived after their window closed (stored raw, never folded)."""
    readings_per_event: int = 50

    @property
    def published(self) -> int:
        """Readings made durable by the edge."""
        if self.events == 0:
            return 0
        last = self.last_event_readings
        return self.readings_per_event * (self.events - 1) + (
            self.readings_per_event if last is None else last
        )

    @property
    def lost(self) -> int:
        """Published readings that are not stored (nor waiting in the outbox)."""
        waiting = self.pending * self.readings_per_event
        return max(self.published - self.stored - waiting, 0)

    @property
    def lost_events(self) -> int:
        """Published events none of whose readings are stored."""
        return max(self.events - self.pending - self.stored_events, 0)

    @property
    def duplicates(self) -> int:
        """Readings folded into windows more than once."""
        return max(self.windowed + self.late - self.stored, 0)

    @property
    def unfolded(self) -> int:
        """Stored readings in no closed window and not late (a window still open)."""
        return max(self.stored - self.windowed - self.late, 0)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, with the derived figures."""
        return asdict(self) | {
            "published": self.published,
            "lost": self.lost,
            "lost_events": self.lost_events,
            "duplicates": self.duplicates,
            "unfolded": self.unfolded,
        }


def totals(devices: list[DeviceTally]) -> dict[str, int]:
    """Sum the figures of every device."""
    keys = ("published", "stored", "lost", "lost_events", "duplicates", "late", "unfolded")
    out = {k: 0 for k in keys}
    out |= {"events": 0, "dropped": 0, "pending": 0, "windowed": 0}
    for d in devices:
        row = d.as_dict()
        for k in out:
            out[k] += int(row[k])
    return out
