"""Detector banks: one detector kind over many series at once, state held in arrays.

A bank holds the state of one rule's detector for every series the rule watches, one
*slot* per series. :meth:`DetectorBank.update` takes one reading for each of a set of
distinct slots (arrays of slot, time, value) and returns a :class:`BankSignals` with
one entry per input, computed with array operations: no Python object per reading.
Readings of one slot are fed in event-time order across calls (the engine sorts a
batch by slot and time and feeds it in *rounds*: the first reading of every slot, then
the second, ...), so a bank may keep sequential state (an exponentially weighted level,
a hysteresis flag) per slot.

Signals are plain arrays. The per-event Python objects (:class:`~dataflows.detectors.
Signal`, messages) are built only for the few entries the alarm state machine must see
(:meth:`DetectorBank.describe`), never for the quiet majority.

:class:`ScalarBank` adapts any scalar :class:`~dataflows.detectors.base.Detector`
(one Python object per slot): rule kinds without a vectorised bank still work, at a
per-reading Python cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from contract.alarms import Severity
from dataflows.detectors.base import Detector, Signal

__all__ = ["BankSignals", "DetectorBank", "ScalarBank"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

SEVERITY_CODES: tuple[Severity | None, ...] = (None, *Severity)
"""``BankSignals.severity`` holds an index into this tuple: 0 keeps the rule's severity."""


@dataclass(frozen=True, slots=True)
class BankSignals:
    """What a bank says about each input reading (arrays of one length).

    - ``valid``: False where the detector has no opinion yet (warming up): the
      scalar equivalent returned None.
    - ``active``: the condition holds (only meaningful where ``valid``).
    - ``value``, ``threshold``: the value and the threshold or expected level that
      explain the signal (NaN for none). ``value`` is the detector's, which is not
      always the reading (a rate detector says the rate).
    - ``severity``: index into :data:`SEVERITY_CODES` (0: the rule's own severity).
    - ``detail``: bank-specific extra arrays that :meth:`DetectorBank.describe` needs
      to word the message (e.g. a z-score); never read by the engine.
    """

    valid: Bools
    active: Bools
    value: F64
    threshold: F64
    severity: npt.NDArray[np.int8]
    detail: dict[str, npt.NDArray[Any]]

    def __len__(self) -> int:
        return len(self.valid)

    def signal(self, i: int, message: str) -> Signal | None:
        """Return entry ``i`` as a scalar :class:`Signal` (None where not valid)."""
        if not self.valid[i]:
            return None
        value, threshold = float(self.value[i]), float(self.threshold[i])
        return Signal(
            bool(self.active[i]),
            None if value != value else value,
            None if threshold != threshold else threshold,
            message,
            SEVERITY_CODES[int(self.severity[i])],
        )


class DetectorBank(Protocol):
    """One rule's detector over many slots (see the module docstring)."""

    @property
    def size(self) -> int:
        """Number of slots."""

    def grow(self, size: int) -> None:
        """Make room for slots ``0 .. size-1``; new slots start fresh."""

    def reset(self, slots: I64) -> None:
        """Forget the state of ``slots`` (they start fresh, as if new)."""

    def update(self, slots: I64, t_us: I64, values: F64) -> BankSignals:
        """Take one reading per slot (``slots`` are distinct); return their signals.

        Entry ``i`` of the signals is about input ``i``. The signals' arrays may share
        memory with the inputs (``value`` is often ``values`` itself).
        """

    def describe(self, signals: BankSignals, i: int) -> str:
        """Word the message of entry ``i`` (called only for entries the alarms need)."""

    def take(self, slots: npt.NDArray[np.int64]) -> None:
        """Keep only ``slots``, renumbered ``0 .. len(slots)-1`` in that order."""

    def snapshot(self, *, copy: bool = True) -> dict[str, Any]:
        """Return the state of every slot as plain data (numpy arrays allowed).

        ``copy=False`` may return views of the live arrays: for a caller that
        serialises the snapshot before the bank's next call.
        """

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot` (the bank may be larger afterwards)."""


class ScalarBank:
    """A bank of scalar detectors, one Python object per slot (the generic slow path)."""

    def __init__(self, make: Callable[[], Detector]) -> None:
        self._make = make
        self._detectors: list[Detector] = []

    @property
    def size(self) -> int:
        """Number of slots."""
        return len(self._detectors)

    def grow(self, size: int) -> None:
        """Make room for ``size`` slots."""
        while len(self._detectors) < size:
            self._detectors.append(self._make())

    def reset(self, slots: I64) -> None:
        """Start ``slots`` afresh."""
        for slot in slots.tolist():
            self._detectors[slot] = self._make()

    def update(self, slots: I64, t_us: I64, values: F64) -> BankSignals:
        """Feed each slot's detector its reading."""
        n = len(slots)
        valid = np.zeros(n, np.bool_)
        active = np.zeros(n, np.bool_)
        value = values.astype(np.float64)
        threshold = np.full(n, np.nan)
        severity = np.zeros(n, np.int8)
        messages = np.empty(n, dtype=object)
        rows = zip(slots.tolist(), t_us.tolist(), values.tolist(), strict=True)
        for i, (slot, t, v) in enumerate(rows):
            signal = self._detectors[slot].update(t, v)
            if signal is None:
                continue
            valid[i] = True
            active[i] = signal.active
            # The detector's value, not the reading's: a rate detector says the rate.
            value[i] = np.nan if signal.value is None else signal.value
            if signal.threshold is not None:
                threshold[i] = signal.threshold
            if signal.severity is not None:
                severity[i] = SEVERITY_CODES.index(signal.severity)
            messages[i] = signal.message
        return BankSignals(valid, active, value, threshold, severity, {"message": messages})

    def describe(self, signals: BankSignals, i: int) -> str:
        """Return the scalar detector's own message."""
        return str(signals.detail["message"][i] or "")

    def take(self, slots: npt.NDArray[np.int64]) -> None:
        """Keep only ``slots``, renumbered in that order."""
        self._detectors = [self._detectors[i] for i in slots.tolist()]

    def snapshot(self, *, copy: bool = True) -> dict[str, Any]:
        """Every detector's snapshot (new objects, whatever ``copy`` says)."""
        return {"detectors": [d.snapshot() for d in self._detectors]}

    def restore(self, state: dict[str, Any]) -> None:
        """Rebuild the detectors from a snapshot."""
        self._detectors = []
        for doc in state["detectors"]:
            detector = self._make()
            detector.restore(doc)
            self._detectors.append(detector)
