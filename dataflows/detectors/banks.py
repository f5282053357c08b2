"""Detector banks by rule: :func:`make_bank`, and the vectorised banks.

=========  ==========================================================
kind       bank
=========  ==========================================================
adaptive   :class:`AdaptiveBank`
anomaly    :class:`AnomalyBank`
threshold  :class:`ThresholdBank` (also ``aggregate``: the same detector;
           the engine words the window and field, as for scalars)
range      :class:`RangeBank` with bounds; None for a faults-only rule
rate       :class:`ScalarBank` of :class:`RateDetector` (no vectorised bank yet)
flatline   :class:`ScalarBank` of :class:`FlatlineDetector` (idem)
others     None: deadman, offline and pattern rules have no per-reading
           detector of one series (the engine drives them)
=========  ==========================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataflows.detectors.adaptive_bank import AdaptiveBank
from dataflows.detectors.anomaly_bank import AnomalyBank
from dataflows.detectors.bank import BankSignals, DetectorBank, ScalarBank
from dataflows.detectors.factory import adaptive_params, anomaly_params, build_detector
from dataflows.detectors.range_bank import RangeBank
from dataflows.detectors.threshold_bank import ThresholdBank

__all__ = [
    "AdaptiveBank",
    "AnomalyBank",
    "BankSignals",
    "DetectorBank",
    "RangeBank",
    "ScalarBank",
    "ThresholdBank",
    "make_bank",
]


if TYPE_CHECKING:
    from dataflows.rules import Rule

if TYPE_CHECKING:  # mypy checks that every bank satisfies the protocol

    def _conforms(
        adaptive: AdaptiveBank,
        anomaly: AnomalyBank,
        threshold: ThresholdBank,
        range_: RangeBank,
        scalar: ScalarBank,
    ) -> list[DetectorBank]:
        return [adaptive, anomaly, threshold, range_, scalar]


def make_bank(rule: Rule) -> DetectorBank | None:
    """Return an empty bank for a series rule (None where no per-series detector runs)."""
    if rule.kind == "adaptive":
        return AdaptiveBank(**adaptive_params(rule))
    if rule.kind == "threshold" or rule.kind == "aggregate":
        return ThresholdBank(
            levels=rule.level_pairs(), above=rule.above is not None, clear=rule.clear
        )
    if rule.kind == "range":
        if rule.low is None and rule.high is None:
            return None
        return RangeBank(low=rule.low, high=rule.high)
    if rule.kind == "anomaly":
        return AnomalyBank(**anomaly_params(rule))
    if rule.kind == "rate" or rule.kind == "flatline":
        return ScalarBank(lambda: build_detector(rule))
    return None
