"""An alarm's explanation in a few words, for tables (``sensorgate alerts``).

The stored ``alarms`` point holds the items of :class:`~contract.alarms.AlarmDetail`
(expected value, band, component, score, history, the deadman's cadence) and, for a
held alarm, how many occurrences were folded into it. :func:`why` words them::

    expected 21.3 in [19.8, 22.8]; prediction error, score 2.41 (z 14.2); history 500 readings
    silent beyond 3x the median interval 300s (allowed 900s; 16 intervals)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["why"]


def _g(value: Any) -> str:
    return f"{float(value):.4g}"


def why(
    detail: Mapping[str, Any] | None,
    folded_raises: int | None = None,
    rate_limited: bool | None = None,
) -> str:
    """Word an alarm's explanation ("" when it has none)."""
    d = detail or {}
    parts = []
    expected = d.get("expected")
    if expected is not None:
        text = f"expected {_g(expected)}"
        low, high = d.get("band_low"), d.get("band_high")
        if low is not None and high is not None:
            text += f" in [{_g(low)}, {_g(high)}]"
        parts.append(text)
    component = d.get("component")
    if component == "silence":
        if d.get("cadence_s") is not None:
            parts.append(f"median interval {_g(d['cadence_s'])}s")
        if d.get("silence_s") is not None:
            parts.append(f"silence allowed {_g(d['silence_s'])}s")
    elif component:
        text = str(component).replace("_", " ")
        if d.get("score") is not None:
            text += f", score {float(d['score']):.2f}"
        extra = []
        if d.get("z") is not None:
            extra.append(f"z {float(d['z']):.1f}")
        if d.get("tail_probability") is not None:
            extra.append(f"tail p {float(d['tail_probability']):.1e}")
        if extra:
            text += f" ({', '.join(extra)})"
        parts.append(text)
    if d.get("history_readings") is not None:
        noun = "intervals" if component == "silence" else "readings"
        parts.append(f"history {int(d['history_readings'])} {noun}")
    if folded_raises:
        held = "rate limited" if rate_limited else "held"
        parts.append(f"{folded_raises} more occurrence(s) folded in ({held})")
    elif rate_limited:
        parts.append("rate limited: further occurrences fold into this alarm")
    return "; ".join(parts)
