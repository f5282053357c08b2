"""The range detector over many series at once: :class:`RangeBank` (stateless)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from dataflows.detectors.bank import F64, I64, BankSignals
from dataflows.detectors.range import RangeDetector

__all__ = ["RangeBank"]


class RangeBank:
    """:class:`~dataflows.detectors.range.RangeDetector` over many slots.

    Bounds only: readings that carry a fault instead of a value are the engine's.
    """

    def __init__(self, *, low: float | None = None, high: float | None = None) -> None:
        spec = RangeDetector(low=low, high=high)
        self.low = None if spec.low is None else float(spec.low)
        self.high = None if spec.high is None else float(spec.high)
        self._size = 0

    @property
    def size(self) -> int:
        """Number of slots."""
        return self._size

    def grow(self, size: int) -> None:
        """Make room for slots ``0 .. size-1`` (there is no state to hold)."""
        self._size = max(self._size, size)

    def reset(self, slots: I64) -> None:
        """Stateless: nothing to forget."""

    def take(self, slots: npt.NDArray[np.int64]) -> None:
        """Keep only ``slots`` (stateless: only the size changes)."""
        self._size = len(slots)

    def snapshot(self, *, copy: bool = True) -> dict[str, Any]:
        """Stateless: only the size."""
        return {"size": self._size}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot`."""
        self._size = int(state["size"])

    def update(self, slots: I64, t_us: I64, values: F64) -> BankSignals:
        """Take one reading per slot; return their signals."""
        v = np.asarray(values, np.float64)
        n = len(v)
        below = np.zeros(n, np.bool_) if self.low is None else v < self.low
        above = np.zeros(n, np.bool_) if self.high is None else ~below & (v > self.high)
        low = math.nan if self.low is None else self.low
        high = math.nan if self.high is None else self.high
        threshold = np.where(below, low, np.where(above, high, low if math.isnan(high) else high))
        return BankSignals(
            np.ones(n, np.bool_), below | above, v, threshold, np.zeros(n, np.int8), {}
        )

    def describe(self, signals: BankSignals, i: int) -> str:
        """Word entry ``i`` as the scalar detector does ("" where not active)."""
        if not signals.active[i]:
            return ""
        value = float(signals.value[i])
        if self.low is not None and value < self.low:
            return f"{value:g} below the valid range {self.low:g}"
        return f"{value:g} above the valid range {self.high:g}"
