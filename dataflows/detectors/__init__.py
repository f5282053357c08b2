"""Detectors: plain classes that say whether a condition holds on a series or a device.

Every detector takes readings in event-time order through ``update`` and returns a
:class:`Signal` (the condition holds or not, with the value and threshold that
explain it) or None while it has no opinion yet (warming up). Memory per series is
bounded, and ``snapshot()``/``restore()`` move the state as plain data. Whether a
signal becomes an alarm (``for`` durations, clearing, flapping) is the alarm state
machine's business, not the detector's.
"""

from dataflows.detectors.adaptive import AdaptiveDetector
from dataflows.detectors.base import Detector, Signal
from dataflows.detectors.deadman import DeadmanDetector
from dataflows.detectors.flatline import FlatlineDetector
from dataflows.detectors.pattern import Condition, PatternDetector
from dataflows.detectors.range import RangeDetector
from dataflows.detectors.rate import RateDetector
from dataflows.detectors.threshold import ThresholdDetector

__all__ = [
    "AdaptiveDetector",
    "Condition",
    "DeadmanDetector",
    "Detector",
    "FlatlineDetector",
    "PatternDetector",
    "RangeDetector",
    "RateDetector",
    "Signal",
    "ThresholdDetector",
]
