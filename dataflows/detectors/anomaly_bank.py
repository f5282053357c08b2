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
from dataflows.detectors._twins import py_max as _max
from dataflows.detectors._twins import py_min as _min
from dataflows.detectors._twins import stuck_runs
from dataflows.detectors.anomaly import (  # the very same constants
    BASE_ALPHA,
    BUCKET_ALPHA,
    BUCKET_MAX,
    ERR_ALPHA,
    EXTREME_BLOCK,
    EXTREME_MARGIN,
    EXTREME_Z,
    GAUSS_MAD,
    HOLD_LIKELIHOOD,
    HUBER,
    LIMIT,
    PERSIST_N,
    PERSIST_SD,
    RMS_CAP,
    ROBUST_SD,
    SHORT_ALPHA,
    SIGN_ALPHA,
    SLOW,
    STUCK_MAX_REPEAT_RATE,
    STUCK_ODDS,
    STUCK_RUNS,
    Z_CAP,
    AnomalyDetector,
    describe_anomaly,
)
from dataflows.detectors.bank import F64, I64, SEVERITY_CODES, BankSignals, Bools

__all__ = ["AnomalyBank"]

_MAJOR = np.int8(SEVERITY_CODES.index(Severity.MAJOR))
_CHUNK = 4096
"""Slots per pass: about a hundred array operations on this many stay in the CPU cache."""
_FLOATS = (
    "last",
    "level",
    "base",
    "c0",
    "c1",
    "dlast",
    "mad_e",
    "mad_b",
    "sa",
    "mua",
    "va",
    "ss",
    "mus",
    "vs",
    "su",
    "muu",
    "vu",
    "vr",
    "bar",
    "repeat",
)
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


def _clip(v: Any, lo: Any, hi: Any) -> Any:
    return np.where(v < lo, lo, np.where(v > hi, hi, v))


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
        each slot's last reading (as the scalar detector does).
        """
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
            x = _clip(v, -LIMIT, LIMIT)
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
                self._step(slots[part], t[part], x[part], part, valid, active, threshold)
                self._words(part, valid, severity, detail)
        return BankSignals(valid, active, v, threshold, severity, detail)

    def _step(
        self, s: I64, t: I64, x: F64, rows: I64, valid: Bools, active: Bools, threshold: F64
    ) -> None:
        spec = self.spec
        a = self._state.arrays
        last = a["last"][s]
        same = x == last
        res = a["res"][s]
        step = np.abs(x - last)
        res = np.where(~same & (step < res), step, res)
        a["res"][s] = res
        run = a["run"][s]
        runmax = a["runmax"][s]
        marked = a["marked"][s]
        runmax = np.where(~same & ~marked & (run > runmax), run, runmax)
        a["runmax"][s] = runmax
        marked = marked & same
        run = np.where(same, run + 1, 0)
        a["run"][s] = run
        a["last"][s] = x
        n = a["n"][s] + 1
        a["n"][s] = n
        warm = n <= spec.warmup
        inv = 1.0 / n

        res0 = np.where(res < math.inf, res, 0.0)
        base = a["base"][s]
        floor = _max(_max(res0, 1e-9 * np.abs(base)), 1e-12)
        level = a["level"][s]
        c0, c1 = a["c0"][s], a["c1"][s]
        phi = np.where(c0 > 0, _clip(c1 / c0, 0.0, 1.0), 0.0)
        expected = level + phi * (last - level)
        e = x - expected
        sig_e = _max(GAUSS_MAD * a["mad_e"][s], floor)
        z = e / sig_e
        sig_b = _max(GAUSS_MAD * a["mad_b"][s], floor)
        u = (x - base) / sig_b
        vr = a["vr"][s]
        sr = _max(np.sqrt(vr), floor)
        e2 = e * e
        if spec.season_us is not None:
            nb = spec.season_buckets
            cell = s * nb + (t % spec.season_us) * nb // spec.season_us
            flat = a["buckets"].reshape(-1)
            seen = flat[cell].astype(np.float64)
            learnt = seen == seen
            sr = np.where(learnt, _max(sr, np.sqrt(seen)), sr)
            new = np.where(learnt, seen + BUCKET_ALPHA * (e2 - seen), e2)
            flat[cell] = np.where(new < BUCKET_MAX, new, BUCKET_MAX)
        z_rms = e / sr

        zc = _clip(z, -Z_CAP, Z_CAP)
        sa = a["sa"][s]
        sa = sa + SHORT_ALPHA * (np.abs(zc) - sa)
        ss = a["ss"][s]
        ss = ss + SIGN_ALPHA * (zc - ss)
        mua, va = a["mua"][s], a["va"][s]
        mus, vs = a["mus"][s], a["vs"][s]
        la = np.where(va > 0, (sa - mua) / np.sqrt(va), 0.0)
        ls = np.where(vs > 0, np.abs(ss - mus) / np.sqrt(vs), 0.0)
        su = a["su"][s]
        su = su + SIGN_ALPHA * (_clip(u, -Z_CAP, Z_CAP) - su)
        muu, vu = a["muu"][s], a["vu"][s]
        lu = np.where(vu > 0, np.abs(su - muu) / np.sqrt(vu), 0.0)
        az = np.abs(z)
        s1 = np.where(az > spec.spike_robust, np.abs(z_rms) / spec.spike, 0.0)
        s2 = la / spec.likelihood
        s3 = _max(ls, lu) / spec.shift
        persist = np.where(lu > PERSIST_SD, a["persist"][s] + 1, 0)
        a["persist"][s] = persist
        s3 = np.where(persist >= PERSIST_N, _max(s3, lu / PERSIST_SD), s3)
        hi_now, lo_now = a["hi"][s], a["lo"][s]
        hi = _max(hi_now, a["hi_old"][s])
        lo = _min(lo_now, a["lo_old"][s])
        margin = EXTREME_MARGIN * (hi - lo)
        beyond = (x > hi + margin) | (x < lo - margin)
        s5 = np.where(beyond, az / EXTREME_Z, 0.0)
        hi_now = _max(hi_now, x)
        lo_now = _min(lo_now, x)
        roll = n % EXTREME_BLOCK == 0
        if roll.any():  # a new block of the recent range starts with this reading
            r = s[roll]
            a["hi_old"][r] = a["hi"][r]
            a["lo_old"][r] = a["lo"][r]
            hi_now = np.where(roll, x, hi_now)
            lo_now = np.where(roll, x, lo_now)
        a["hi"][s] = hi_now
        a["lo"][s] = lo_now
        score = _max(_max(_max(s1, s5), s2), s3)
        code = np.where(
            (s1 >= 1.0) | (s1 >= score),
            1,
            np.where(s5 >= score, 5, np.where(s2 >= score, 2, 3)),
        ).astype(np.int8)
        repeat = a["repeat"][s]
        stuck = self._stuck(run, runmax, repeat)
        rate_r = _max(ERR_ALPHA, inv)
        a["repeat"][s] = np.where(stuck, repeat, repeat + rate_r * (same - repeat))

        cool = a["cool"][s]
        bar = a["bar"][s]
        was = a["active"][s]
        held = a["held"][s]
        raised = a["raised"][s]
        fired = (score > 1.0) & ~warm & ((cool == 0) | (score > bar))
        over = was & (t - raised > spec.hold_us)
        bar = np.where(
            over & fired,
            _max(bar, score * spec.rearm),
            np.where(fired, _max(np.where((cool > 0) | was, bar, 0.0), score * spec.rearm), bar),
        )
        fired = fired & ~over
        code_s = np.where(fired & ~was, code, a["code"][s])
        raised = np.where(fired & ~was, t, raised)
        ongoing = ~fired & was & ~over
        held = np.where(fired, 0, np.where(ongoing, held + 1, held))
        ends = over | (ongoing & (lu <= spec.clear) & (la <= HOLD_LIKELIHOOD))
        now = fired | (ongoing & ~ends)
        cool = np.where(ends, spec.refractory, np.where(~fired & ~was & (cool > 0), cool - 1, cool))
        a["bar"][s] = bar
        a["code"][s] = code_s
        a["held"][s] = held
        a["active"][s] = now
        a["cool"][s] = cool
        a["raised"][s] = raised
        a["marked"][s] = marked | stuck | now

        slow = np.where(now, SLOW, 1.0)
        d = x - level
        a_e = _max(ERR_ALPHA, inv)
        a["c0"][s] = c0 + a_e * (d * d - c0)
        a["c1"][s] = c1 + a_e * (d * a["dlast"][s] - c1)
        level = level + _max(spec.alpha, inv) * d
        a["level"][s] = level
        a["dlast"][s] = x - level
        mad_e = a["mad_e"][s]
        a["mad_e"][s] = mad_e + a_e * (_min(np.abs(e), HUBER * sig_e) - mad_e)
        cap_b = HUBER * sig_b
        db = x - base
        a_b = _max(BASE_ALPHA, inv) * slow
        a["base"][s] = base + a_b * _clip(db, -cap_b, cap_b)
        mad_b = a["mad_b"][s]
        a["mad_b"][s] = mad_b + a_b * (_min(np.abs(db), cap_b) - mad_b)
        a_h = _max(spec.history, inv)
        ds = ss - mus
        a["mus"][s] = mus + a_h * ds
        a["vs"][s] = vs + a_h * (ds * ds - vs)
        a_u = a_h * slow
        da = sa - mua
        a["mua"][s] = mua + a_u * da
        a["va"][s] = va + a_u * (da * da - va)
        du = su - muu
        a_u = np.where(~warm & (du * du > ROBUST_SD * ROBUST_SD * vu), a_u * SLOW, a_u)
        a["muu"][s] = muu + a_u * du
        a["vu"][s] = vu + a_u * (du * du - vu)
        cap_r = RMS_CAP * sr
        a["vr"][s] = vr + a_h * (_min(e2, cap_r * cap_r) - vr)
        a["sa"][s] = sa
        a["ss"][s] = ss
        a["su"][s] = su

        ok = ~warm
        on = ok & (now | stuck)
        valid[rows] = ok
        active[rows] = on
        threshold[rows] = np.where(ok, expected, np.nan)
        major = fired & (score > 2.0) & ~stuck & ok
        self._major = major
        # The words are only needed where the condition holds (few entries).
        k = np.flatnonzero(on)
        self._on = k
        self._detail = {
            "score": score[k],
            "code": np.where(stuck & ~now, 4, np.where(fired, code, code_s))[k].astype(np.int8),
            "band": spec.spike * sr[k],
            "z": z_rms[k],
            "likelihood": la[k],
            "shift": _max(ls[k], lu[k]),
            "deviation": lu[k],
            "baseline": base[k],
            "held": np.where(fired, 0, held)[k],
            "run": run[k],
            "repeat": a["repeat"][s[k]],
        }

    def _words(self, rows: I64, valid: Bools, severity: Any, detail: dict[str, Any]) -> None:
        severity[rows] = np.where(self._major, _MAJOR, np.int8(0))
        on = rows[self._on]
        for name, values in self._detail.items():
            detail[name][on] = values
        self._detail = {}

    def _stuck(self, run: I64, runmax: I64, repeat: F64) -> Bools:
        """Apply the scalar's stuck test: a run of repeats too unlikely at the repeat rate."""
        stuck = ~(run < self.spec.stuck_min) & ~(repeat > STUCK_MAX_REPEAT_RATE)
        stuck &= ~(run <= STUCK_RUNS * runmax)
        return stuck_runs(stuck, run, repeat, STUCK_ODDS)

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
