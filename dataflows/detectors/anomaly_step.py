"""One vectorised step of :class:`~dataflows.detectors.anomaly_bank.AnomalyBank`.

:func:`step` takes one reading for each of a chunk of distinct slots (past their first
reading) and updates their state arrays exactly as
:meth:`~dataflows.detectors.anomaly.AnomalyDetector.update` updates one detector, in
the scalar's phases and order of operations:

1. :func:`_runs`: repeats, resolution, reading count;
2. :func:`_errors`: prediction and normalised errors (seasonal buckets learnt here);
3. :func:`_components`: the component scores and the recent range;
4. the stuck test and the repeat rate (:func:`step` itself);
5. :func:`_decide`: firing, hold and suppression;
6. :func:`_learn`: the level, baseline and history updates.

Each phase passes what later phases need in a small record (:class:`_Errors`,
:class:`_Components`), never through the state arrays, so reading a phase shows all
it depends on. ``np.where`` replaces the scalar's branches, and
:func:`~dataflows.detectors._twins.py_max`/``py_min`` its ``max``/``min``, so the
results are bit-identical to the scalar's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

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
)
from dataflows.detectors.bank import F64, I64, Bools

__all__ = ["StepResult", "clip", "step"]

Arrays = dict[str, npt.NDArray[Any]]


def clip(v: Any, lo: Any, hi: Any) -> Any:
    """Clip as the scalar's ``_clip`` does, element-wise (same comparisons, same picks)."""
    return np.where(v < lo, lo, np.where(v > hi, hi, v))


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one step says of its chunk (arrays of the chunk's length, but ``on``)."""

    ok: Bools
    """Past warmup: the signal is valid."""
    on: Bools
    """The condition holds (valid entries only)."""
    expected: F64
    major: Bools
    """Fired with a score above 2 (and not stuck): severity major."""
    words: I64
    """Indices (into the chunk) of the entries that hold: ``detail`` is about these."""
    detail: dict[str, npt.NDArray[Any]]


@dataclass(frozen=True, slots=True)
class _Errors:
    """Phase 2: the prediction and its normalised errors."""

    floor: F64
    level: F64
    c0: F64
    c1: F64
    base: F64
    expected: F64
    e: F64
    e2: F64
    sig_e: F64
    sig_b: F64
    z: F64
    u: F64
    vr: F64
    sr: F64
    z_rms: F64


@dataclass(frozen=True, slots=True)
class _Components:
    """Phase 3: the short averages, their likelihoods and the component scores."""

    sa: F64
    ss: F64
    su: F64
    la: F64
    ls: F64
    lu: F64
    score: F64
    code: npt.NDArray[np.int8]


def step(spec: AnomalyDetector, a: Arrays, s: I64, t: I64, x: F64) -> StepResult:
    """Take reading ``x[i]`` at ``t[i]`` for slot ``s[i]`` (distinct, seen before).

    Updates the state arrays ``a`` in place and returns the signals. Call it inside
    ``np.errstate(all="ignore")``: overflow to inf is part of the scalar's arithmetic.
    """
    last = a["last"][s]
    same, run, marked, res, n = _runs(a, s, x, last)
    warm = n <= spec.warmup
    inv = 1.0 / n
    err = _errors(spec, a, s, t, x, last, res)
    comp = _components(spec, a, s, x, n, err)
    repeat = a["repeat"][s]
    stuck = _stuck(spec, run, a["runmax"][s], repeat)
    a["repeat"][s] = np.where(stuck, repeat, repeat + _max(ERR_ALPHA, inv) * (same - repeat))
    fired, now, held, code_s = _decide(spec, a, s, t, comp, warm, stuck, marked)
    _learn(spec, a, s, x, inv, warm, now, err, comp)

    ok = ~warm
    on = ok & (now | stuck)
    # The words are only needed where the condition holds (few entries).
    k = np.flatnonzero(on)
    detail = {
        "score": comp.score[k],
        "code": np.where(stuck & ~now, 4, np.where(fired, comp.code, code_s))[k].astype(np.int8),
        "band": spec.spike * err.sr[k],
        "z": err.z_rms[k],
        "likelihood": comp.la[k],
        "shift": _max(comp.ls[k], comp.lu[k]),
        "deviation": comp.lu[k],
        "baseline": err.base[k],
        "held": np.where(fired, 0, held)[k],
        "run": run[k],
        "repeat": a["repeat"][s[k]],
    }
    major = fired & (comp.score > 2.0) & ~stuck & ok
    return StepResult(ok, on, np.where(ok, err.expected, np.nan), major, k, detail)


def _runs(a: Arrays, s: I64, x: F64, last: F64) -> tuple[Bools, I64, Bools, F64, I64]:
    """Phase 1: repeats of the last value, resolution, count; return same, run, marked, res, n."""
    same = x == last
    res = a["res"][s]
    step_size = np.abs(x - last)
    res = np.where(~same & (step_size < res), step_size, res)
    a["res"][s] = res
    run = a["run"][s]
    runmax = a["runmax"][s]
    marked = a["marked"][s]
    # A run that ended outside any alarm is normal for this series.
    a["runmax"][s] = np.where(~same & ~marked & (run > runmax), run, runmax)
    marked = marked & same
    run = np.where(same, run + 1, 0)
    a["run"][s] = run
    a["last"][s] = x
    n = a["n"][s] + 1
    a["n"][s] = n
    return same, run, marked, res, n


def _errors(
    spec: AnomalyDetector, a: Arrays, s: I64, t: I64, x: F64, last: F64, res: F64
) -> _Errors:
    """Phase 2: prediction, robust and RMS errors, baseline distance; learn the season."""
    res0 = np.where(res < math.inf, res, 0.0)
    base = a["base"][s]
    floor = _max(_max(res0, 1e-9 * np.abs(base)), 1e-12)
    level = a["level"][s]
    c0, c1 = a["c0"][s], a["c1"][s]
    phi = np.where(c0 > 0, clip(c1 / c0, 0.0, 1.0), 0.0)
    expected = level + phi * (last - level)
    e = x - expected
    sig_e = _max(GAUSS_MAD * a["mad_e"][s], floor)
    sig_b = _max(GAUSS_MAD * a["mad_b"][s], floor)
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
    return _Errors(
        floor=floor,
        level=level,
        c0=c0,
        c1=c1,
        base=base,
        expected=expected,
        e=e,
        e2=e2,
        sig_e=sig_e,
        sig_b=sig_b,
        z=e / sig_e,
        u=(x - base) / sig_b,
        vr=vr,
        sr=sr,
        z_rms=e / sr,
    )


def _components(
    spec: AnomalyDetector, a: Arrays, s: I64, x: F64, n: I64, err: _Errors
) -> _Components:
    """Phase 3: prediction error, likelihood, level shift and new-extreme scores."""
    z = err.z
    zc = clip(z, -Z_CAP, Z_CAP)
    sa = a["sa"][s]
    sa = sa + SHORT_ALPHA * (np.abs(zc) - sa)
    ss = a["ss"][s]
    ss = ss + SIGN_ALPHA * (zc - ss)
    mua, va = a["mua"][s], a["va"][s]
    mus, vs = a["mus"][s], a["vs"][s]
    la = np.where(va > 0, (sa - mua) / np.sqrt(va), 0.0)
    ls = np.where(vs > 0, np.abs(ss - mus) / np.sqrt(vs), 0.0)
    su = a["su"][s]
    su = su + SIGN_ALPHA * (clip(err.u, -Z_CAP, Z_CAP) - su)
    muu, vu = a["muu"][s], a["vu"][s]
    lu = np.where(vu > 0, np.abs(su - muu) / np.sqrt(vu), 0.0)
    az = np.abs(z)
    s1 = np.where(az > spec.spike_robust, np.abs(err.z_rms) / spec.spike, 0.0)
    s2 = la / spec.likelihood
    s3 = _max(ls, lu) / spec.shift
    persist = np.where(lu > PERSIST_SD, a["persist"][s] + 1, 0)
    a["persist"][s] = persist
    s3 = np.where(persist >= PERSIST_N, _max(s3, lu / PERSIST_SD), s3)
    s5 = _extreme(a, s, x, n, az)
    score = _max(_max(_max(s1, s5), s2), s3)
    code = np.where(
        (s1 >= 1.0) | (s1 >= score),
        1,
        np.where(s5 >= score, 5, np.where(s2 >= score, 2, 3)),
    ).astype(np.int8)
    return _Components(sa=sa, ss=ss, su=su, la=la, ls=ls, lu=lu, score=score, code=code)


def _extreme(a: Arrays, s: I64, x: F64, n: I64, az: F64) -> F64:
    """Return the new-extreme score; move the recent range on to include ``x``."""
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
    return np.asarray(s5, np.float64)


def _stuck(spec: AnomalyDetector, run: I64, runmax: I64, repeat: F64) -> Bools:
    """Apply the scalar's stuck test: a run of repeats too unlikely at the repeat rate."""
    stuck = ~(run < spec.stuck_min) & ~(repeat > STUCK_MAX_REPEAT_RATE)
    stuck &= ~(run <= STUCK_RUNS * runmax)
    return stuck_runs(stuck, run, repeat, STUCK_ODDS)


def _decide(
    spec: AnomalyDetector,
    a: Arrays,
    s: I64,
    t: I64,
    comp: _Components,
    warm: Bools,
    stuck: Bools,
    marked: Bools,
) -> tuple[Bools, Bools, I64, npt.NDArray[np.int8]]:
    """Phase 5: fire, hold, end and cool down; return fired, now, held, the alarm's code."""
    score = comp.score
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
    code_s = np.where(fired & ~was, comp.code, a["code"][s])
    raised = np.where(fired & ~was, t, raised)
    ongoing = ~fired & was & ~over
    held = np.where(fired, 0, np.where(ongoing, held + 1, held))
    ends = over | (ongoing & (comp.lu <= spec.clear) & (comp.la <= HOLD_LIKELIHOOD))
    now = fired | (ongoing & ~ends)
    cool = np.where(ends, spec.refractory, np.where(~fired & ~was & (cool > 0), cool - 1, cool))
    a["bar"][s] = bar
    a["code"][s] = code_s
    a["held"][s] = held
    a["active"][s] = now
    a["cool"][s] = cool
    a["raised"][s] = raised
    a["marked"][s] = marked | stuck | now
    return fired, now, held, code_s


def _learn(
    spec: AnomalyDetector,
    a: Arrays,
    s: I64,
    x: F64,
    inv: F64,
    warm: Bools,
    now: Bools,
    err: _Errors,
    comp: _Components,
) -> None:
    """Phase 6: learn the level, baseline and histories (ten times slower while active)."""
    slow = np.where(now, SLOW, 1.0)
    level, c0, c1, base = err.level, err.c0, err.c1, err.base
    d = x - level
    a_e = _max(ERR_ALPHA, inv)
    a["c0"][s] = c0 + a_e * (d * d - c0)
    a["c1"][s] = c1 + a_e * (d * a["dlast"][s] - c1)
    level = level + _max(spec.alpha, inv) * d
    a["level"][s] = level
    a["dlast"][s] = x - level
    mad_e = a["mad_e"][s]
    a["mad_e"][s] = mad_e + a_e * (_min(np.abs(err.e), HUBER * err.sig_e) - mad_e)
    cap_b = HUBER * err.sig_b
    db = x - base
    a_b = _max(BASE_ALPHA, inv) * slow
    a["base"][s] = base + a_b * clip(db, -cap_b, cap_b)
    mad_b = a["mad_b"][s]
    a["mad_b"][s] = mad_b + a_b * (_min(np.abs(db), cap_b) - mad_b)
    a_h = _max(spec.history, inv)
    mus, vs = a["mus"][s], a["vs"][s]
    ds = comp.ss - mus
    a["mus"][s] = mus + a_h * ds
    a["vs"][s] = vs + a_h * (ds * ds - vs)
    a_u = a_h * slow
    mua, va = a["mua"][s], a["va"][s]
    da = comp.sa - mua
    a["mua"][s] = mua + a_u * da
    a["va"][s] = va + a_u * (da * da - va)
    muu, vu = a["muu"][s], a["vu"][s]
    du = comp.su - muu
    a_u = np.where(~warm & (du * du > ROBUST_SD * ROBUST_SD * vu), a_u * SLOW, a_u)
    a["muu"][s] = muu + a_u * du
    a["vu"][s] = vu + a_u * (du * du - vu)
    cap_r = RMS_CAP * err.sr
    vr = err.vr
    a["vr"][s] = vr + a_h * (_min(err.e2, cap_r * cap_r) - vr)
    a["sa"][s] = comp.sa
    a["ss"][s] = comp.ss
    a["su"][s] = comp.su
