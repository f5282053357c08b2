"""The threshold detector over many series at once: :class:`ThresholdBank`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from contract.alarms import Severity
from dataflows.detectors._slots import SlotBank
from dataflows.detectors.bank import F64, I64, SEVERITY_CODES, BankSignals
from dataflows.detectors.threshold import ThresholdDetector

__all__ = ["ThresholdBank"]


class ThresholdBank(SlotBank):
    """:class:`~dataflows.detectors.threshold.ThresholdDetector` over many slots.

    Same parameters, checks, hysteresis, escalation (the most severe level crossed sets
    the severity and the threshold) and messages; one boolean of state per slot.
    """

    def __init__(
        self,
        *,
        levels: Sequence[tuple[float, Severity]],
        above: bool = True,
        clear: float | None = None,
    ) -> None:
        spec = ThresholdDetector(levels=levels, above=above, clear=clear)
        self.above = spec.above
        self.clear = float(spec.clear)
        self.levels = [(float(level), sev) for level, sev in spec.levels]
        self._codes = [np.int8(SEVERITY_CODES.index(sev)) for _, sev in spec.levels]
        self._word = "above" if self.above else "below"
        super().__init__({"active": (np.bool_, False, ())})

    def update(self, slots: I64, t_us: I64, values: F64) -> BankSignals:
        """Take one reading per slot (``slots`` distinct); return their signals."""
        slots = np.asarray(slots, np.int64)
        v = np.asarray(values, np.float64)
        state = self._state.arrays["active"]
        first = self.levels[0][0]
        if self.above:
            active = np.where(state[slots], ~(v <= self.clear), v > first)
        else:
            active = np.where(state[slots], ~(v >= self.clear), v < first)
        state[slots] = active
        threshold = np.full(len(v), first)
        severity = np.zeros(len(v), np.int8)
        for (level, _), code in zip(self.levels, self._codes, strict=True):
            crossed = active & ((v > level) if self.above else (v < level))
            threshold = np.where(crossed, level, threshold)
            severity = np.where(crossed, code, severity)
        return BankSignals(np.ones(len(v), np.bool_), active, v, threshold, severity, {})

    def describe(self, signals: BankSignals, i: int) -> str:
        """Word entry ``i`` as the scalar detector does ("" where not active)."""
        if not signals.active[i]:
            return ""
        value, threshold = float(signals.value[i]), float(signals.threshold[i])
        return f"{value:g} {self._word} {threshold:g}"
