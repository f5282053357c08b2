"""Why a bank's entry fired: :class:`~contract.alarms.AlarmDetail` from its signals.

A detector bank says what it saw in plain arrays (:class:`~dataflows.detectors.bank.
BankSignals`, ``detail`` holding bank-specific arrays). The alarm machine asks for the
detail of an entry only when that entry makes an alarm event, through the callable
:func:`explainer` returns, so the quiet majority of readings costs nothing here.

Known banks:

- the anomaly detector (``band``, ``code``, ``score``, ``z``, ``likelihood``, ``shift``,
  ``baseline``, ``held``): the expected value (the signal's threshold) and the band
  ``expected ± band`` of the prediction-error component, the component that fired and
  its score, the tail probability of the likelihood, the history it weighs;
- the adaptive detector (``z``, ``stuck``): the learnt level and the robust z-score.

Any other bank gives no detail (its events carry the value, threshold and message).
An entry whose condition does not hold (the reading that clears an alarm) names no
component and no score: only what was expected.
"""

from __future__ import annotations

import math
from typing import Any

from contract.alarms import AlarmDetail
from dataflows.alarms import Explain
from dataflows.detectors.bank import BankSignals

__all__ = ["bank_detail", "explainer"]

_COMPONENTS = ("", "prediction_error", "likelihood", "level_shift", "stuck")
"""The anomaly detector's component codes (``dataflows.detectors.anomaly.COMPONENTS``)."""


def _num(array: Any, i: int) -> float | None:
    if array is None:
        return None
    value = float(array[i])
    return value if math.isfinite(value) else None


def _count(array: Any, i: int) -> int | None:
    value = _num(array, i)
    return None if value is None or value < 0 else int(value)


def _history(bank: Any) -> int | None:
    window = getattr(getattr(bank, "spec", None), "window", None)
    return int(window) if isinstance(window, int | float) and window > 0 else None


def bank_detail(bank: Any, signals: BankSignals, i: int) -> AlarmDetail | None:
    """Return the detail of entry ``i`` of ``signals`` (None for a bank that says none)."""
    d = signals.detail
    expected = _num(signals.threshold, i)
    fired = bool(signals.valid[i] and signals.active[i])
    if "band" in d and "code" in d:
        code = int(d["code"][i]) if fired else 0  # a quiet entry (a clear) names none
        component = _COMPONENTS[code] if 0 < code < len(_COMPONENTS) else None
        band = _num(d["band"], i)
        likelihood = _num(d.get("likelihood"), i)
        tail = None
        if component == "likelihood" and likelihood is not None:
            tail = 0.5 * math.erfc(likelihood / math.sqrt(2))
        return AlarmDetail(
            component=component,
            score=_num(d.get("score"), i) if fired else None,
            z=_num(d.get("z"), i),
            likelihood=likelihood,
            tail_probability=tail,
            shift=_num(d.get("shift"), i),
            expected=expected,
            band_low=None if expected is None or band is None else expected - band,
            band_high=None if expected is None or band is None else expected + band,
            baseline=_num(d.get("baseline"), i),
            history_readings=_history(bank),
            readings_since_fired=_count(d.get("held"), i),
        )
    if "z" in d and "stuck" in d:
        stuck = bool(d["stuck"][i])
        return AlarmDetail(
            component=None if not fired else "stuck" if stuck else "z_score",
            z=_num(d["z"], i),
            expected=expected,
        )
    return None


def explainer(bank: Any, signals: BankSignals, i: int) -> Explain:
    """Return a callable giving entry ``i``'s detail (called only if an event is made)."""
    return lambda: bank_detail(bank, signals, i)
