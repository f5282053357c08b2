"""Build the scalar detector of a rule: the one place that maps rule fields to detectors."""

from __future__ import annotations

from typing import Any

from dataflows.detectors.adaptive import AdaptiveDetector
from dataflows.detectors.anomaly import AnomalyDetector
from dataflows.detectors.deadman import DeadmanDetector
from dataflows.detectors.flatline import FlatlineDetector
from dataflows.detectors.pattern import Condition, PatternDetector
from dataflows.detectors.range import RangeDetector
from dataflows.detectors.rate import RateDetector
from dataflows.detectors.threshold import ThresholdDetector

__all__ = ["adaptive_params", "anomaly_params", "build_detector"]


def adaptive_params(rule: Any) -> dict[str, Any]:
    """Return the keyword arguments of :class:`AdaptiveDetector` for an adaptive rule."""
    return {
        "threshold": rule.threshold,
        "clear": rule.clear,
        "alpha": rule.alpha,
        "warmup": rule.warmup,
        "season_us": rule.season,
        "season_buckets": rule.season_buckets,
        "hold": rule.hold,
    }


def anomaly_params(rule: Any) -> dict[str, Any]:
    """Return the keyword arguments of :class:`AnomalyDetector` for an anomaly rule."""
    return {
        "spike": rule.spike,
        "spike_robust": rule.spike_robust,
        "likelihood": rule.likelihood,
        "shift": rule.shift,
        "clear": rule.clear,
        "alpha": rule.alpha,
        "history": rule.history,
        "warmup": rule.warmup,
        "hold_us": rule.hold,
        "refractory": rule.refractory,
        "rearm": rule.rearm,
        "season_us": rule.season,
        "season_buckets": rule.season_buckets,
    }


def build_detector(rule: Any) -> Any:
    """Build the detector of a rule (None for rules the engine handles itself)."""
    kind = rule.kind
    if kind in ("threshold", "aggregate"):
        return ThresholdDetector(
            levels=rule.level_pairs(), above=rule.above is not None, clear=rule.clear
        )
    if kind == "rate":
        return RateDetector(max_rate=rule.max_rate, window_us=rule.window, direction=rule.direction)
    if kind == "flatline":
        return FlatlineDetector(duration_us=rule.duration, tolerance=rule.tolerance)
    if kind == "range":
        if rule.low is None and rule.high is None:
            return None  # faults only
        return RangeDetector(low=rule.low, high=rule.high)
    if kind == "adaptive":
        return AdaptiveDetector(**adaptive_params(rule))
    if kind == "anomaly":
        return AnomalyDetector(**anomaly_params(rule))
    if kind == "deadman":
        return DeadmanDetector(
            silence_us=None if rule.auto else rule.silence,
            factor=rule.factor,
            floor_us=rule.min_silence,
            initial_us=rule.initial_silence,
        )
    if kind == "pattern":
        return PatternDetector(
            conditions=[Condition(c.member, c.op, c.value) for c in rule.conditions],
            mode=rule.mode,
            within_us=rule.within,
            count=rule.count,
        )
    return None  # offline: driven by status events
