"""How the anomaly detector words its signals: component names and messages.

Shared by :class:`~dataflows.detectors.anomaly.AnomalyDetector` and its bank
(:class:`~dataflows.detectors.anomaly_bank.AnomalyBank`), so both say the same words.
"""

from __future__ import annotations

import math

__all__ = ["COMPONENTS", "describe_anomaly"]

COMPONENTS = (
    "",
    "prediction error",
    "anomaly likelihood",
    "level shift",
    "stuck",
    "new extreme",
)
"""Names of the component codes (0: none)."""


def describe_anomaly(
    *,
    value: float,
    expected: float,
    band: float,
    code: int,
    score: float,
    z: float,
    likelihood: float,
    shift: float,
    deviation: float,
    baseline: float,
    held: int,
    run: int,
    repeat: float,
    history: int,
) -> str:
    """Word why an anomaly signal holds (the scalar detector and its bank share this)."""
    if code == 4:
        return f"stuck at {value:g} for {run + 1} readings (repeat rate {repeat:.2f})"
    name = COMPONENTS[code]
    if held == 0:
        if code == 1:
            why = f"prediction error {z:.1f} sigmas"
        elif code == 2:
            tail = 0.5 * math.erfc(likelihood / math.sqrt(2))
            why = f"error level {likelihood:.1f} sd above its history (tail probability {tail:.1e})"
        elif code == 5:
            why = f"beyond the recent range, prediction error {z:.1f} sigmas"
        else:
            why = f"level {shift:.1f} sd away from its history"
        return (
            f"{value:g} vs expected {expected:.4g} ± {band:.3g}: {why}"
            f" (component: {name}, score {score:.2f}; history ~{history} readings)"
        )
    return (
        f"{value:g} still {deviation:.1f} sd from the baseline {baseline:.4g}"
        f" (raised by {name}; {held} readings since it fired; history ~{history} readings)"
    )
