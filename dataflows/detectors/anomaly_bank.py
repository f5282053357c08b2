"""The anomaly detector over many series at once, its state in arrays.

:class:`AnomalyBank` is the vectorised twin of
:class:`~dataflows.detectors.anomaly.AnomalyDetector` (read that module for the
method). Fed the same readings of a slot in the same order, it says exactly what the
scalar detector says: same validity, condition, value, threshold, severity and message.
Every floating-point step is the scalar's own operation in the scalar's order (its
``_max``/``_min``/``_clip`` pick an argument by comparison, as ``np.where`` does here),
so the results are bit-identical; the stuck test's ``log`` is settled by
:func:`math.log` where ``np.log`` could differ in the last bit, as in
:mod:`~dataflows.detectors.adaptive_bank`.

State per slot: 25 float64 and 10 integer or boolean scalars, plus the seasonal error
scale ``[slot, bucket]`` in float32 (NaN: not learnt yet; capped at
:data:`~dataflows.detectors.anomaly.BUCKET_MAX` and rounded to float32, as the scalar's
``array("f")`` does).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from contract.alarms import Severity
from dataflows.detectors._slots import Field, SlotBank
from dataflows.detectors.anomaly import BUCKET_MAX, LIMIT, AnomalyDetector, describe_anomaly
from dataflows.detectors.anomaly_state import SCALAR_FLOATS
from dataflows.detectors.anomaly_step import clip, step
from dataflows.detectors.bank import F64, I64, SEVERITY_CODES, BankSignals

__all__ = ["AnomalyBank"]

_MAJOR = np.int8(SEVERITY_CODES.index(Severity.MAJOR))
_CHUNK = 4096
"""Slots per pass: about a hundred array operations on this many stay in the CPU cache."""
_FLOATS = ("last", *SCALAR_FLOATS, "repeat")
_RANGE = (("hi", -math.inf), ("lo", math.inf), ("hi_old", -math.inf), ("lo_old", math.inf))


def _fields(buckets: int) -> dict[str, Field]:
    fields: dict[str, Field] = {name: (np.float64, 0.0, ()) for name in _FLOATS}
    fields.update(
        {
            **{name: (np.float64, fresh, ()) for name, fresh in _RANGE},
            "n": (np.int64, 0, ()),
            "res": (np.float64, math.inf, ()),
            "run": (np.int64, 0, ()),
            "runmax": (np.int64, 0, ()),
            "marked": (np.bool_, False, ()),
            "persist": (np.int64, 0, ()),
            "raised": (np.int64, 0, ()),
            "active": (np.bool_, False, ()),
            "code": (np.int8, 0, ()),
            "held": (np.int64, 0, ()),
            "cool": (np.int64, 0, ()),
            "buckets": (np.float32, math.nan, (buckets,)),
        }
    )
    return fields


class AnomalyBank(SlotBank):
    """:class:`~dataflows.detectors.anomaly.AnomalyDetector` over many slots.

    Takes the scalar detector's parameters (validated the same way). ``detail`` of its
    signals (filled where the condition holds, zero elsewhere): ``band``, ``code``
    (component), ``score``, ``z``, ``likelihood``, ``shift``, ``deviation``,
    ``baseline``, ``held``, ``run``, ``repeat``.
    """

    def __init__(self, **params: Any) -> None:
        spec = AnomalyDetector(**params)
        self.spec = spec
        if spec.season_us is not None and spec.season_us * spec.season_buckets >= 2**62:
            raise ValueError("season_us times season_buckets must stay below 2**62")
        super().__init__(_fields(spec.season_buckets))

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot` (seasons of another bucket count start fresh).

        A snapshot of an earlier version without the recent range starts the range at
        each slot's last reading (as the scalar detector does); one with float64 seasonal
        buckets is capped at :data:`BUCKET_MAX` and rounded to float32 (as the scalar).
        """
        buckets = state.get("buckets")
        if buckets is not None and np.asarray(buckets).dtype != np.float32:
            state = {**state, "buckets": np.minimum(np.asarray(buckets, np.float64), BUCKET_MAX)}
        super().restore(state)
        if "hi" not in state:
            a = self._state.arrays
            for name, _ in _RANGE:
                a[name][:] = np.where(a["n"] > 0, a["last"], a[name])

    def update(self, slots: I64, t_us: I64, values: F64) -> BankSignals:
        """Take one reading per slot (``slots`` distinct); return their signals.

        A NaN value leaves its slot untouched and is not valid (the scalar's None).
        """
        slots = np.asarray(slots, np.int64)
        t = np.asarray(t_us, np.int64)
        v = np.asarray(values, np.float64)
        n = len(slots)
        valid = np.zeros(n, np.bool_)
        active = np.zeros(n, np.bool_)
        threshold = np.full(n, np.nan)
        severity = np.zeros(n, np.int8)
        detail: dict[str, Any] = {
            name: np.zeros(n, dtype)
            for name, dtype in (
                ("band", np.float64),
                ("code", np.int8),
                ("score", np.float64),
                ("z", np.float64),
                ("likelihood", np.float64),
                ("shift", np.float64),
                ("deviation", np.float64),
                ("baseline", np.float64),
                ("held", np.int64),
                ("run", np.int64),
                ("repeat", np.float64),
            )
        }
        a = self._state.arrays
        with np.errstate(all="ignore"):
            x = clip(v, -LIMIT, LIMIT)
            known = ~np.isnan(v)
            count = a["n"][slots]
            first = known & (count == 0)
            if first.any():
                s = slots[first]
                a["n"][s] = 1
                a["last"][s] = x[first]
                a["level"][s] = x[first]
                a["base"][s] = x[first]
                for name, _ in _RANGE:
                    a[name][s] = x[first]
            rest = np.flatnonzero(known & (count > 0))
            for lo in range(0, len(rest), _CHUNK):
                part = rest[lo : lo + _CHUNK]
                out = step(self.spec, a, slots[part], t[part], x[part])
                valid[part] = out.ok
                active[part] = out.on
                threshold[part] = out.expected
                severity[part] = np.where(out.major, _MAJOR, np.int8(0))
                on = part[out.words]
                for name, values in out.detail.items():
                    detail[name][on] = values
        return BankSignals(valid, active, v, threshold, severity, detail)

    def describe(self, signals: BankSignals, i: int) -> str:
        """Word entry ``i`` as the scalar detector does ("" where not active)."""
        if not (signals.valid[i] and signals.active[i]):
            return ""
        d = signals.detail
        return describe_anomaly(
            value=float(signals.value[i]),
            expected=float(signals.threshold[i]),
            band=float(d["band"][i]),
            code=int(d["code"][i]),
            score=float(d["score"][i]),
            z=float(d["z"][i]),
            likelihood=float(d["likelihood"][i]),
            shift=float(d["shift"][i]),
            deviation=float(d["deviation"][i]),
            baseline=float(d["baseline"][i]),
            held=int(d["held"][i]),
            run=int(d["run"][i]),
            repeat=float(d["repeat"][i]),
            history=self.spec.window,
        )
