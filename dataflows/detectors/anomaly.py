"""The default anomaly detector: prediction, anomaly likelihood, level shift, suppression.

One fixed configuration for every series, learnt online, bounded state (44 floats with
24 seasonal buckets, plus a few integers), O(1) work per reading. Per reading ``x``:

1. **Prediction.** An exponentially weighted level ``m`` (rate ``alpha``) and a
   first-order autoregression around it, ``phi`` = lag-1 autocovariance / variance of
   ``x - m`` (learnt online, clipped to [0, 1]): ``expected = m + phi * (last - m)``.
   A noisy level gets ``phi`` near 0 (predict the level), a random walk near 1
   (predict the last value).
2. **Normalised error.** ``e = x - expected`` over two scales: a robust one (mean
   absolute error, Huber-clipped at 3 scales, times 1.2533) gives ``z``; a plain RMS
   one over a longer history (``history``) that outliers do inflate, maxed with the
   RMS error of the reading's phase of the season (24 hourly buckets of a day), gives
   ``z_rms``. The seasonal RMS keeps recurring events (a daily jump, bursty hours)
   from alarming.
3. **Components** (each a score where 1 is its threshold):
   - *prediction error*: ``|z_rms| / spike`` where also ``|z| > spike_robust``;
   - *anomaly likelihood* (Numenta's idea): a short moving average of ``|z|`` (about
     5 readings) against the mean and standard deviation of that average over the
     long history; its excess in standard deviations over ``likelihood``;
   - *level shift*: a moving average of the signed ``z`` (about 10 readings) against
     its own history the same way, over ``shift``: a run of errors of one sign, as a
     level shift leaves behind while the predictor catches up (a change-point test
     calibrated on the series' own fluctuations); likewise the moving average of the
     reading's distance from a slow baseline (``u``), which a shift moves for longer;
   - *stuck*: a run of identical readings too unlikely at the series' learnt repeat
     rate (as the adaptive detector).
4. **Decision and suppression.** A component above 1 fires; the condition then holds
   while the reading stays more than ``clear`` scales from a slow baseline (learnt ten
   times slower while it holds) for at most ``hold`` readings. After it ends, for
   ``refractory`` readings a new firing must beat ``rearm`` times the last one's score:
   one incident, one alarm; a larger one still raises.

The first ``warmup`` readings only teach. Values are clipped to ±1e150 for learning
(no overflow, no NaN state); a NaN reading is ignored (None).
"""

from __future__ import annotations

import math
from typing import Any

from contract.alarms import Severity
from dataflows.detectors.base import Signal

__all__ = ["COMPONENTS", "AnomalyDetector", "describe_anomaly"]

GAUSS_MAD = 1.2533
LIMIT = 1e150
ERR_ALPHA = 0.01
BASE_ALPHA = 0.005
SHORT_ALPHA = 0.2
SIGN_ALPHA = 0.1
Z_CAP = 10.0
RMS_CAP = 30.0
BUCKET_ALPHA = 0.05
SLOW = 0.1
HUBER = 3.0
STUCK_ODDS = math.log(1e-6)
STUCK_MAX_REPEAT_RATE = 0.9

COMPONENTS = ("", "prediction error", "anomaly likelihood", "level shift", "stuck")
"""Names of the component codes (0: none)."""


def _clip(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else (hi if v > hi else v)


def _max(a: float, b: float) -> float:
    return b if b > a else a


def _min(a: float, b: float) -> float:
    return b if b < a else a


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
        else:
            why = f"run of one-sided errors {shift:.1f} sd beyond its history"
        return (
            f"{value:g} vs expected {expected:.4g} ± {band:.3g}: {why}"
            f" (component: {name}, score {score:.2f}; history ~{history} readings)"
        )
    return (
        f"{value:g} still {deviation:.1f} sigmas from the baseline {baseline:.4g}"
        f" (raised by {name}; {held} readings since it fired; history ~{history} readings)"
    )


class AnomalyDetector:
    """The default anomaly detector of a series (see the module docstring)."""

    __slots__ = (
        "_active",
        "_bar",
        "_base",
        "_buckets",
        "_c0",
        "_c1",
        "_code",
        "_cool",
        "_dlast",
        "_held",
        "_last",
        "_level",
        "_mad_b",
        "_mad_e",
        "_mua",
        "_mus",
        "_muu",
        "_n",
        "_repeat",
        "_res",
        "_run",
        "_sa",
        "_ss",
        "_su",
        "_va",
        "_vr",
        "_vs",
        "_vu",
        "alpha",
        "clear",
        "history",
        "hold",
        "likelihood",
        "rearm",
        "refractory",
        "season_buckets",
        "season_us",
        "shift",
        "spike",
        "spike_robust",
        "stuck_min",
        "warmup",
    )

    def __init__(
        self,
        *,
        spike: float = 6.0,
        spike_robust: float = 10.0,
        likelihood: float = 6.0,
        shift: float = 6.0,
        clear: float = 3.0,
        alpha: float = 0.05,
        history: float = 0.002,
        warmup: int = 100,
        hold: int = 600,
        refractory: int = 400,
        rearm: float = 1.5,
        season_us: int | None = 86_400_000_000,
        season_buckets: int = 24,
        stuck_min: int = 10,
    ) -> None:
        for name, v in (
            ("spike", spike),
            ("spike_robust", spike_robust),
            ("likelihood", likelihood),
            ("shift", shift),
            ("clear", clear),
        ):
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a positive number; got {v}")
        for name, v in (("alpha", alpha), ("history", history)):
            if not 0 < v < 1:
                raise ValueError(f"{name} must be in (0, 1); got {v}")
        if rearm < 1:
            raise ValueError(f"rearm must be at least 1; got {rearm}")
        if min(warmup, hold, refractory, stuck_min) < 0:
            raise ValueError("warmup, hold, refractory and stuck_min cannot be negative")
        self.spike = float(spike)
        self.spike_robust = float(spike_robust)
        self.likelihood = float(likelihood)
        self.shift = float(shift)
        self.clear = float(clear)
        self.alpha = float(alpha)
        self.history = float(history)
        self.warmup = max(1, int(warmup))
        self.hold = int(hold)
        self.refractory = int(refractory)
        self.rearm = float(rearm)
        self.season_us = season_us if season_buckets > 0 and season_us else None
        self.season_buckets = season_buckets if self.season_us else 0
        self.stuck_min = int(stuck_min)
        self._n = 0
        self._last = 0.0
        self._res = math.inf
        self._run = 0
        self._repeat = 0.0
        self._level = self._base = 0.0
        self._c0 = self._c1 = self._dlast = 0.0
        self._mad_e = self._mad_b = 0.0
        self._sa = self._mua = self._va = 0.0
        self._ss = self._mus = self._vs = 0.0
        self._vr = 0.0
        self._su = self._muu = self._vu = 0.0
        self._bar = 0.0
        self._active = False
        self._code = 0
        self._held = 0
        self._cool = 0
        self._buckets = [math.nan] * self.season_buckets

    @property
    def window(self) -> int:
        """Readings of history the likelihood and the RMS scale average over (~1/history)."""
        return round(1 / self.history)

    def update(self, t_us: int, value: float) -> Signal | None:
        """Take one reading; None while warming up (and for a NaN reading)."""
        if value != value:
            return None
        x = _clip(value, -LIMIT, LIMIT)
        if self._n == 0:
            self._n = 1
            self._last = self._level = self._base = x
            return None
        last = self._last
        same = x == last
        if not same:
            step = abs(x - last)
            if step < self._res:
                self._res = step
        self._run = self._run + 1 if same else 0
        self._last = x
        n = self._n = self._n + 1
        warm = n <= self.warmup
        inv = 1.0 / n

        # 1. prediction, 2. normalised errors
        res = self._res if self._res < math.inf else 0.0
        floor = _max(_max(res, 1e-9 * abs(self._base)), 1e-12)
        level = self._level
        phi = _clip(self._c1 / self._c0, 0.0, 1.0) if self._c0 > 0 else 0.0
        expected = level + phi * (last - level)
        e = x - expected
        sig_e = _max(GAUSS_MAD * self._mad_e, floor)
        z = e / sig_e
        sig_b = _max(GAUSS_MAD * self._mad_b, floor)
        base = self._base
        u = (x - base) / sig_b
        sr = _max(math.sqrt(self._vr), floor)
        bucket = self._bucket(t_us)
        if bucket >= 0:
            known = self._buckets[bucket]
            if known == known:
                sr = _max(sr, math.sqrt(known))
        z_rms = e / sr
        e2 = e * e
        if bucket >= 0:
            known = self._buckets[bucket]
            self._buckets[bucket] = e2 if known != known else known + BUCKET_ALPHA * (e2 - known)

        # 3. components
        zc = _clip(z, -Z_CAP, Z_CAP)
        self._sa += SHORT_ALPHA * (abs(zc) - self._sa)
        self._ss += SIGN_ALPHA * (zc - self._ss)
        la = (self._sa - self._mua) / math.sqrt(self._va) if self._va > 0 else 0.0
        ls = abs(self._ss - self._mus) / math.sqrt(self._vs) if self._vs > 0 else 0.0
        self._su += SIGN_ALPHA * (_clip(u, -Z_CAP, Z_CAP) - self._su)
        lu = abs(self._su - self._muu) / math.sqrt(self._vu) if self._vu > 0 else 0.0
        ls = _max(ls, lu)
        s1 = abs(z_rms) / self.spike if abs(z) > self.spike_robust else 0.0
        s2 = la / self.likelihood
        s3 = ls / self.shift
        score = _max(_max(s1, s2), s3)
        code = 1 if s1 >= score else (2 if s2 >= score else 3)
        stuck = self._stuck()
        if not stuck:
            self._repeat += _max(ERR_ALPHA, inv) * (float(same) - self._repeat)

        # 4. decision and suppression
        cool = self._cool
        fired = score > 1.0 and not warm and (cool == 0 or score > self._bar)
        if fired:
            self._bar = _max(self._bar if cool > 0 else 0.0, score * self.rearm)
            if not self._active:
                self._code = code
            self._active = True
            self._held = 0
        elif self._active:
            self._held += 1
            if abs(self._su) <= self.clear or self._held > self.hold:
                self._active = False
                self._cool = self.refractory
        elif cool > 0:
            self._cool = cool - 1

        # learning
        def rate(a: float) -> float:
            return _max(a, inv)

        slow = SLOW if self._active else 1.0
        d = x - level
        a_e = rate(ERR_ALPHA)
        self._c0 += a_e * (d * d - self._c0)
        self._c1 += a_e * (d * self._dlast - self._c1)
        self._level = level + rate(self.alpha) * d
        self._dlast = x - self._level
        self._mad_e += a_e * (_min(abs(e), HUBER * sig_e) - self._mad_e)
        cap_b = HUBER * sig_b
        db = x - base
        a_b = rate(BASE_ALPHA) * slow
        self._base = base + a_b * _clip(db, -cap_b, cap_b)
        self._mad_b += a_b * (_min(abs(db), cap_b) - self._mad_b)
        a_h = rate(self.history)
        da = self._sa - self._mua
        self._mua += a_h * da
        self._va += a_h * (da * da - self._va)
        du = self._su - self._muu
        self._muu += a_h * du
        self._vu += a_h * (du * du - self._vu)
        ds = self._ss - self._mus
        self._mus += a_h * ds
        self._vs += a_h * (ds * ds - self._vs)
        cap_r = RMS_CAP * sr
        self._vr += a_h * (_min(e2, cap_r * cap_r) - self._vr)

        if warm:
            return None
        active = self._active or stuck
        if not active:
            return Signal(False, value, expected)
        severity = Severity.MAJOR if (fired and score > 2.0) and not stuck else None
        message = describe_anomaly(
            value=value,
            expected=expected,
            band=self.spike * sr,
            code=4 if stuck and not self._active else (code if fired else self._code),
            score=score,
            z=z_rms,
            likelihood=la,
            shift=ls,
            deviation=abs(u),
            baseline=base,
            held=0 if fired else self._held,
            run=self._run,
            repeat=self._repeat,
            history=self.window,
        )
        return Signal(True, value, expected, message, severity)

    def _bucket(self, t_us: int) -> int:
        if self.season_us is None:
            return -1
        return (t_us % self.season_us) * self.season_buckets // self.season_us

    def _stuck(self) -> bool:
        if self._run < self.stuck_min or self._repeat > STUCK_MAX_REPEAT_RATE:
            return False
        p = _max(self._repeat, 1e-3)
        return self._run >= STUCK_ODDS / math.log(p)

    def snapshot(self) -> dict[str, Any]:
        """Return the state as plain data (JSON-able: None for NaN and inf)."""
        return {
            "n": self._n,
            "last": self._last,
            "res": None if math.isinf(self._res) else self._res,
            "run": self._run,
            "repeat": self._repeat,
            "level": self._level,
            "base": self._base,
            "c0": self._c0,
            "c1": self._c1,
            "dlast": self._dlast,
            "mad_e": self._mad_e,
            "mad_b": self._mad_b,
            "sa": self._sa,
            "mua": self._mua,
            "va": self._va,
            "ss": self._ss,
            "mus": self._mus,
            "vs": self._vs,
            "su": self._su,
            "muu": self._muu,
            "vu": self._vu,
            "vr": self._vr,
            "bar": self._bar,
            "active": self._active,
            "code": self._code,
            "held": self._held,
            "cool": self._cool,
            "buckets": [None if b != b else b for b in self._buckets],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot` (seasonal buckets of another count start fresh)."""
        self._n = int(state["n"])
        self._last = float(state["last"])
        self._res = math.inf if state["res"] is None else float(state["res"])
        self._run = int(state["run"])
        self._repeat = float(state["repeat"])
        for name in (
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
        ):
            setattr(self, f"_{name}", float(state[name]))
        self._active = bool(state["active"])
        self._code = int(state["code"])
        self._held = int(state["held"])
        self._cool = int(state["cool"])
        buckets = list(state.get("buckets") or [])
        if len(buckets) == self.season_buckets:
            self._buckets = [math.nan if b is None else float(b) for b in buckets]
        else:
            self._buckets = [math.nan] * self.season_buckets
