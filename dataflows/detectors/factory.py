"""Build the scalar detector of a rule: the one place that maps rule fields to detectors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

from dataflows.detectors.adaptive import AdaptiveDetector
from dataflows.detectors.anomaly import AnomalyDetector
from dataflows.detectors.deadman import DeadmanDetector
from dataflows.detectors.flatline import FlatlineDetector
from dataflows.detectors.pattern import Condition, PatternDetector
from dataflows.detectors.range import RangeDetector
from dataflows.detectors.rate import RateDetector
from dataflows.detectors.threshold import ThresholdDetector

if TYPE_CHECKING:  # detectors do not import the rules at run time
    from dataflows.rules import AdaptiveRule, AnomalyRule, FlatlineRule, RateRule, Rule

__all__ = ["RuleDetector", "adaptive_params", "anomaly_params", "build_detector"]

RuleDetector = (
    ThresholdDetector
    | RateDetector
    | FlatlineDetector
    | RangeDetector
    | AdaptiveDetector
    | AnomalyDetector
    | DeadmanDetector
    | PatternDetector
)
"""The scalar detector of a rule, as :func:`build_detector` builds it."""


def adaptive_params(rule: AdaptiveRule) -> dict[str, Any]:
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


def anomaly_params(rule: AnomalyRule) -> dict[str, Any]:
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


@overload
def build_detector(rule: RateRule) -> RateDetector: ...
@overload
def build_detector(rule: FlatlineRule) -> FlatlineDetector: ...
@overload
def build_detector(rule: Rule) -> RuleDetector | None: ...


def build_detector(rule: Rule) -> RuleDetector | None:
    """Build the detector of a rule (None for rules the engine handles itself)."""
    if rule.kind == "threshold" or rule.kind == "aggregate":
        return ThresholdDetector(
            levels=rule.level_pairs(), above=rule.above is not None, clear=rule.clear
        )
    if rule.kind == "rate":
        return RateDetector(max_rate=rule.max_rate, window_us=rule.window, direction=rule.direction)
    if rule.kind == "flatline":
        return FlatlineDetector(duration_us=rule.duration, tolerance=rule.tolerance)
    if rule.kind == "range":
        if rule.low is None and rule.high is None:
            return None  # faults only
        return RangeDetector(low=rule.low, high=rule.high)
    if rule.kind == "adaptive":
        return AdaptiveDetector(**adaptive_params(rule))
    if rule.kind == "anomaly":
        return AnomalyDetector(**anomaly_params(rule))
    if rule.kind == "deadman":
        return DeadmanDetector(
            silence_us=None if rule.silence == "auto" else rule.silence,
            factor=rule.factor,
            floor_us=rule.min_silence,
            initial_us=rule.initial_silence,
        )
    if rule.kind == "pattern":
        return PatternDetector(
            conditions=[Condition(c.member, c.op, c.value) for c in rule.conditions],
            mode=rule.mode,
            within_us=rule.within,
            count=rule.count,
        )
    return None  # offline: driven by status events
