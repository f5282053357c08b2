"""The columns of one series rule in a shard, and the order its readings reach its bank.

:class:`RuleColumns` holds, per series rule, which slot of the rule's
:class:`~dataflows.detectors.bank.DetectorBank` each series has, the last time taken
per slot, which slots have a busy alarm machine, and the machines themselves.
:func:`rounds` splits a batch sorted by (slot, time) into rounds: the first reading of
every slot, then the second, ...; a bank takes one reading per slot at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from dataflows.alarms import AlarmMachine
from dataflows.detectors.bank import DetectorBank
from dataflows.registry import NONE
from dataflows.rules import Rule

__all__ = ["F64", "I64", "RuleColumns", "make_rule_bank", "rounds"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def make_rule_bank(rule: Rule) -> DetectorBank | None:
    """Return the detector bank of a series rule (None for a kind without one)."""
    from dataflows.detectors.banks import make_bank

    return make_bank(rule)


@dataclass(slots=True)
class RuleColumns:
    """One series rule's slots, last times, busy flags and alarm machines in a shard."""

    rule: Rule
    fingerprint: str
    bank: DetectorBank | None
    slot_of_series: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    series_of_slot: list[int] = field(default_factory=list)
    last_t: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    busy: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, np.bool_))
    machines: dict[int, AlarmMachine] = field(default_factory=dict)
    """Series -> its alarm machine (only series that ever needed one)."""

    @property
    def faults(self) -> bool:
        """Whether the rule watches fault readings (a ``range`` rule with ``faults``)."""
        return bool(self.rule.kind == "range" and self.rule.faults)

    def fit_slots(self) -> None:
        """Grow the per-slot columns (and the bank) to the slots assigned so far."""
        size = len(self.series_of_slot)
        if len(self.last_t) < size:
            self.last_t = np.concatenate(
                (self.last_t, np.full(size - len(self.last_t), NONE, np.int64))
            )
            self.busy = np.concatenate((self.busy, np.zeros(size - len(self.busy), np.bool_)))
            if self.bank is not None:
                self.bank.grow(size)


def rounds(slot: I64) -> Iterator[I64]:
    """Yield, for ``slot`` sorted ascending, the positions of each round in turn.

    Round ``k`` holds the ``k``-th reading of every slot that has one.
    """
    head = np.concatenate(([True], slot[1:] != slot[:-1]))
    starts = np.flatnonzero(head)
    rank = np.arange(len(slot)) - np.repeat(starts, np.diff(np.append(starts, len(slot))))
    by_round = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_round], np.arange(int(rank.max()) + 2))
    for k in range(len(bounds) - 1):
        yield by_round[bounds[k] : bounds[k + 1]]
