"""What the decode stage makes of a batch: telemetry as columns, events, dead letters.

Shared by the native paths (:mod:`dataflows.decode`, :mod:`dataflows.decode_fast`) and
the adapters' path (:mod:`dataflows.decode_foreign`), and by offline detection and
replay, which build columns directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from dataflows.adapters.result import Command
from dataflows.ingest import CommandIn, Rejected, StatusIn

__all__ = ["DecodedBatch"]


@dataclass(slots=True)
class DecodedBatch:
    """The accepted telemetry of a batch as columns, and everything else.

    Message arrays (one entry per accepted telemetry message, in processing order) and
    reading arrays (one entry per reading; a message's readings are contiguous, in
    order, ``msg_count`` of them).
    """

    msg_device: list[int] = field(default_factory=list)
    msg_seq: list[int] = field(default_factory=list)
    msg_outbox: list[str | None] = field(default_factory=list)
    msg_own_times: list[bool] = field(default_factory=list)
    """Whether the message's reading times are its own (SensorGate telemetry), not the
    arrival time an adapter gave readings that carry none: only then does a redelivery
    carry the same times as its first delivery."""
    msg_received_us: list[int] = field(default_factory=list)
    msg_event_id: list[str] = field(default_factory=list)
    msg_traceparent: list[str | None] = field(default_factory=list)
    msg_count: list[int] = field(default_factory=list)
    series: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    t_us: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    value: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0, np.float64))
    """NaN for a fault reading (its text in ``faults``)."""
    faults: dict[int, str] = field(default_factory=dict)
    events: list[StatusIn | CommandIn] = field(default_factory=list)
    """Status and command messages, in batch order (rare: per-event objects)."""
    rejected: list[Rejected] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    """Messages adapters asked the gateway to publish (Sparkplug rebirth requests)."""
    adapter_skipped: int = 0
    """Values adapters skipped by design (strings, datasets, excluded fields)."""
    adapter_ignored: list[str] = field(default_factory=list)
    """Why adapters deliberately left whole messages unmapped (one entry each)."""

    @property
    def messages(self) -> int:
        """Accepted telemetry messages."""
        return len(self.msg_device)

    @property
    def readings(self) -> int:
        """Readings in accepted telemetry."""
        return len(self.series)

    def append_readings(self, series: list[int], times: list[int], values: list[float]) -> None:
        """Append reading columns (the messages' arrays are appended by the caller)."""
        if series:
            self.series = np.concatenate([self.series, np.asarray(series, np.int32)])
            self.t_us = np.concatenate([self.t_us, np.asarray(times, np.int64)])
            self.value = np.concatenate([self.value, np.asarray(values, np.float64)])
