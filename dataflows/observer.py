"""What the flow reports as it runs: a narrow seam for metrics.

The flow calls an :class:`Observer`; the gateway plugs in Prometheus counters, tests
plug in :class:`CountingObserver`, and the default does nothing.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

__all__ = ["CountingObserver", "NullObserver", "Observer"]


class Observer(Protocol):
    """Receives counts from the flow's steps (called on worker threads)."""

    def message_in(self, readings: int, messages: int = 1) -> None:
        """Count ``messages`` accepted messages carrying ``readings`` readings in all."""

    def rejected(self, reason: str) -> None:
        """Count a message that became a dead letter for ``reason``."""

    def duplicate(self, readings: int) -> None:
        """Count a re-delivered event (``readings`` readings) dropped by dedupe."""

    def late(self, readings: int) -> None:
        """Count ``readings`` readings that arrived after their windows closed."""

    def adapted(self, skipped: int, ignored: list[str]) -> None:
        """Count values adapters skipped by design and messages they left unmapped (why)."""

    def sequence_gap(self, site: str, device: str, missing: int) -> None:
        """Count ``missing`` sequence numbers a device skipped (messages not, or not yet, seen)."""

    def sequence_reset(self, site: str, device: str) -> None:
        """Count a device whose sequence started again (a new or recreated outbox)."""

    def evicted(self, devices: int, series: int) -> None:
        """Count idle devices and series whose state was forgotten."""


class NullObserver:
    """Counts nothing."""

    def message_in(self, readings: int, messages: int = 1) -> None:
        """Ignore."""

    def rejected(self, reason: str) -> None:
        """Ignore."""

    def duplicate(self, readings: int) -> None:
        """Ignore."""

    def late(self, readings: int) -> None:
        """Ignore."""

    def adapted(self, skipped: int, ignored: list[str]) -> None:
        """Ignore."""

    def sequence_gap(self, site: str, device: str, missing: int) -> None:
        """Ignore."""

    def sequence_reset(self, site: str, device: str) -> None:
        """Ignore."""

    def evicted(self, devices: int, series: int) -> None:
        """Ignore."""


class CountingObserver:
    """Counts in memory (for tests and the benchmark)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def message_in(self, readings: int, messages: int = 1) -> None:
        """Count messages and their readings."""
        self.counts["messages"] += messages
        self.counts["readings"] += readings

    def rejected(self, reason: str) -> None:
        """Count a dead letter by reason."""
        self.counts[f"rejected:{reason}"] += 1

    def duplicate(self, readings: int) -> None:
        """Count a duplicate."""
        self.counts["duplicates"] += readings

    def late(self, readings: int) -> None:
        """Count late readings."""
        self.counts["late"] += readings

    def adapted(self, skipped: int, ignored: list[str]) -> None:
        """Count skipped values and ignored messages."""
        self.counts["adapter_skipped"] += skipped
        for why in ignored:
            self.counts[f"adapter_ignored:{why}"] += 1

    def sequence_gap(self, site: str, device: str, missing: int) -> None:
        """Count skipped sequence numbers, in all and per device."""
        self.counts["sequence_gaps"] += missing
        self.counts[f"sequence_gaps:{site}/{device}"] += missing

    def sequence_reset(self, site: str, device: str) -> None:
        """Count a sequence reset, in all and per device."""
        self.counts["sequence_resets"] += 1
        self.counts[f"sequence_resets:{site}/{device}"] += 1

    def evicted(self, devices: int, series: int) -> None:
        """Count evicted devices and series."""
        self.counts["evicted_devices"] += devices
        self.counts["evicted_series"] += series
