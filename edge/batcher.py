"""Group readings into one telemetry event per device, by count or by age.

A batch closes when it holds ``max_readings`` readings or when its oldest reading
has waited ``max_age_s`` (monotonic seconds), whichever comes first. The batcher is
plain data: the agent asks it what is due and turns batches into events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contract.events import Reading

__all__ = ["Batch", "Batcher"]


@dataclass(slots=True)
class Batch:
    """Readings of one device waiting to become an event."""

    device: str
    opened_at: float
    readings: list[Reading] = field(default_factory=list)


class Batcher:
    """Per-device batches closed by count or age."""

    def __init__(self, *, max_readings: int, max_age_s: float) -> None:
        self.reconfigure(max_readings=max_readings, max_age_s=max_age_s)
        self._open: dict[str, Batch] = {}

    def reconfigure(self, *, max_readings: int, max_age_s: float) -> None:
        """Change the limits; open batches are judged by the new ones from now on."""
        if max_readings < 1 or max_age_s <= 0:
            raise ValueError("max_readings must be >= 1 and max_age_s > 0")
        self.max_readings = max_readings
        self.max_age_s = max_age_s

    def add(self, device: str, readings: list[Reading], now: float) -> list[Batch]:
        """Add readings; return the batches that reached ``max_readings``."""
        closed: list[Batch] = []
        for reading in readings:
            batch = self._open.get(device)
            if batch is None:
                batch = self._open[device] = Batch(device, now)
            batch.readings.append(reading)
            if len(batch.readings) >= self.max_readings:
                closed.append(self._open.pop(device))
        return closed

    def due(self, now: float) -> list[Batch]:
        """Return (and close) the batches whose oldest reading is ``max_age_s`` old."""
        ripe = [d for d, b in self._open.items() if now - b.opened_at >= self.max_age_s]
        out = [self._open.pop(d) for d in ripe]
        # A smaller max_readings set remotely may leave oversize batches open: split them.
        for device, batch in list(self._open.items()):
            if len(batch.readings) >= self.max_readings:
                out.append(self._open.pop(device))
        return [piece for b in out for piece in self._split(b)]

    def _split(self, batch: Batch) -> list[Batch]:
        n = self.max_readings
        if len(batch.readings) <= n:
            return [batch]
        return [
            Batch(batch.device, batch.opened_at, batch.readings[i : i + n])
            for i in range(0, len(batch.readings), n)
        ]

    def next_deadline(self) -> float | None:
        """Monotonic time when the next batch closes by age (``None`` if none is open)."""
        if not self._open:
            return None
        return min(b.opened_at for b in self._open.values()) + self.max_age_s

    def flush(self) -> list[Batch]:
        """Close every open batch (on shutdown)."""
        out = [piece for b in self._open.values() for piece in self._split(b)]
        self._open.clear()
        return out

    @property
    def pending(self) -> int:
        """Readings held in open batches."""
        return sum(len(b.readings) for b in self._open.values())
