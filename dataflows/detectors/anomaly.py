"""The default anomaly detector: prediction, new extremes, likelihood, level shift, stuck.

One fixed configuration for every series, learnt online, bounded state (50 floats with
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
   from alarming. A slow baseline ``b`` (Huber mean, ~200 readings) and the spread of
   the readings around it give the baseline distance ``u = (x - b) / spread``.
3. **Components** (each a score where 1 is its threshold):
   - *prediction error*: ``|z_rms| / spike`` where also ``|z| > spike_robust``;
   - *new extreme*: a reading beyond the range of the last 2,000 to 4,000 readings
     (by 2 % of that range) with a robust error ``|z|`` over 5: ``|z| / 5``. Most
     incidents that matter take a series where it has not been lately; requiring the
     error as well keeps a trend (every reading a new maximum, each a small step)
     quiet. The range is kept as two blocks of readings (this one and the last), so
     an old extreme is forgotten after two blocks;
   - *anomaly likelihood* (Numenta's): a short moving average of ``|z|`` (about 5
     readings) against the mean and standard deviation of that average over the long
     history; its excess in standard deviations over ``likelihood`` (8: a tail
     probability of about 1e-15 were it Gaussian; heavy-tailed series need it);
   - *level shift* (a change-point test): a moving average of the signed ``z``
     (about 10 readings) and of the baseline distance ``u``, each against its own
     history in standard deviations, over ``shift``; and, for a moderate shift that
     lasts, the baseline distance beyond 3 of its standard deviations for 20
     readings in a row (a CUSUM-like persistence rule). The history of the baseline
     distance learns ten times slower from values beyond 4 standard deviations, so a
     slow onset is not absorbed before it is seen;
   - *stuck*: a run of identical readings too unlikely at the series' learnt repeat
     rate (as the adaptive detector) and 1.5 times longer than any run seen outside
     an alarm (count data repeats zeros at night).
4. **Decision, hold and suppression.** A component above 1 fires. The condition then
   holds while the baseline distance stays more than ``clear`` of its standard
   deviations from its mean (the level has not come back) or the short error average
   stays 3 standard deviations above its history (a burst of noise goes on); the
   baseline and the histories of both learn ten times slower meanwhile. It holds for
   at most
   ``hold`` (event time) after the raise: a level that stays is then a new normal and
   is learnt. After an alarm ends, for
   ``refractory`` readings a new firing must beat ``rearm`` times the alarm's largest
   score: one incident, one alarm; a larger one still raises.

The first ``warmup`` readings only teach. Values are clipped to ±1e150 for learning
(no overflow, no NaN state); a NaN reading is ignored (None).
"""

from __future__ import annotations

import math
from array import array
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
STUCK_RUNS = 1.5
"""A stuck run must be this many times longer than the longest run seen outside alarms."""
EXTREME_BLOCK = 2000
"""Readings per block of the recent range (the range spans the last 1 to 2 blocks)."""
EXTREME_MARGIN = 0.02
"""How far beyond the recent range (a share of its width) a new extreme must be."""
EXTREME_Z = 5.0
"""Robust error a new extreme needs (its score is ``|z| / EXTREME_Z``)."""
PERSIST_SD = 3.0
PERSIST_N = 20
"""A baseline distance beyond PERSIST_SD standard deviations for PERSIST_N readings fires."""
ROBUST_SD = 4.0
"""The baseline distance's history learns ten times slower from values beyond this."""
HOLD_LIKELIHOOD = 3.0
"""An alarm also holds while the short error average is this many sd above its history."""
BUCKET_MAX = 3.4028234663852886e38
"""The seasonal buckets are float32 (half the memory of the detector's largest state):
each learnt value is capped at float32's largest finite value, then rounded to float32.
The cap touches only series whose errors exceed 1.8e19 (the bucket's RMS then floors
their RMS scale at 1.8e19 instead of more)."""

COMPONENTS = (
    "",
    "prediction error",
    "anomaly likelihood",
    "level shift",
    "stuck",
    "new extreme",
)
"""Names of the component codes (0: none)."""


def _buckets(n: int) -> array[float]:
    """``n`` unlearnt (NaN) seasonal buckets, stored as float32."""
    return array("f", [math.nan]) * n


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
        "_hi",
        "_hi_old",
        "_last",
        "_level",
        "_lo",
        "_lo_old",
        "_mad_b",
        "_mad_e",
        "_marked",
        "_mua",
        "_mus",
        "_muu",
        "_n",
        "_persist",
        "_raised_us",
        "_repeat",
        "_res",
        "_run",
        "_runmax",
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
        "hold_us",
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
        likelihood: float = 8.0,
        shift: float = 6.0,
        clear: float = 2.0,
        alpha: float = 0.05,
        history: float = 0.002,
        warmup: int = 100,
        hold_us: int = 600_000_000,
        refractory: int = 100,
        rearm: float = 3.0,
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
        if min(warmup, hold_us, refractory, stuck_min) < 0:
            raise ValueError("warmup, hold_us, refractory and stuck_min cannot be negative")
        self.spike = float(spike)
        self.spike_robust = float(spike_robust)
        self.likelihood = float(likelihood)
        self.shift = float(shift)
        self.clear = float(clear)
        self.alpha = float(alpha)
        self.history = float(history)
        self.warmup = max(1, int(warmup))
        self.hold_us = int(hold_us)
        self.refractory = int(refractory)
        self.rearm = float(rearm)
        self.season_us = season_us if season_buckets > 0 and season_us else None
        self.season_buckets = season_buckets if self.season_us else 0
        self.stuck_min = int(stuck_min)
        self._n = 0
        self._last = 0.0
        self._res = math.inf
        self._run = 0
        self._runmax = 0
        self._marked = False
        self._repeat = 0.0
        self._level = self._base = 0.0
        self._c0 = self._c1 = self._dlast = 0.0
        self._mad_e = self._mad_b = 0.0
        self._sa = self._mua = self._va = 0.0
        self._ss = self._mus = self._vs = 0.0
        self._vr = 0.0
        self._su = self._muu = self._vu = 0.0
        self._hi = self._hi_old = -math.inf
        self._lo = self._lo_old = math.inf
        self._persist = 0
        self._bar = 0.0
        self._active = False
        self._code = 0
        self._held = 0
        self._cool = 0
        self._raised_us = 0
        self._buckets = _buckets(self.season_buckets)

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
            self._hi = self._lo = self._hi_old = self._lo_old = x
            return None
        last = self._last
        same = x == last
        if not same:
            step = abs(x - last)
            if step < self._res:
                self._res = step
            # A run that ended outside any alarm is normal for this series.
            if not self._marked and self._run > self._runmax:
                self._runmax = self._run
            self._marked = False
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
            learnt = e2 if known != known else known + BUCKET_ALPHA * (e2 - known)
            # The array rounds to float32; the cap keeps a huge error finite.
            self._buckets[bucket] = learnt if learnt < BUCKET_MAX else BUCKET_MAX

        # 3. components
        zc = _clip(z, -Z_CAP, Z_CAP)
        self._sa += SHORT_ALPHA * (abs(zc) - self._sa)
        self._ss += SIGN_ALPHA * (zc - self._ss)
        la = (self._sa - self._mua) / math.sqrt(self._va) if self._va > 0 else 0.0
        ls = abs(self._ss - self._mus) / math.sqrt(self._vs) if self._vs > 0 else 0.0
        self._su += SIGN_ALPHA * (_clip(u, -Z_CAP, Z_CAP) - self._su)
        lu = abs(self._su - self._muu) / math.sqrt(self._vu) if self._vu > 0 else 0.0
        s1 = abs(z_rms) / self.spike if abs(z) > self.spike_robust else 0.0
        s2 = la / self.likelihood
        s3 = _max(ls, lu) / self.shift
        self._persist = self._persist + 1 if lu > PERSIST_SD else 0
        if self._persist >= PERSIST_N:
            s3 = _max(s3, lu / PERSIST_SD)
        hi = _max(self._hi, self._hi_old)
        lo = _min(self._lo, self._lo_old)
        margin = EXTREME_MARGIN * (hi - lo)
        s5 = abs(z) / EXTREME_Z if (x > hi + margin or x < lo - margin) else 0.0
        if n % EXTREME_BLOCK == 0:
            self._hi_old, self._lo_old = self._hi, self._lo
            self._hi, self._lo = x, x
        else:
            self._hi = _max(self._hi, x)
            self._lo = _min(self._lo, x)
        score = _max(_max(_max(s1, s5), s2), s3)
        if s1 >= 1.0 or s1 >= score:
            code = 1
        elif s5 >= score:
            code = 5
        else:
            code = 2 if s2 >= score else 3
        stuck = self._stuck()
        if not stuck:
            self._repeat += _max(ERR_ALPHA, inv) * (float(same) - self._repeat)

        # 4. decision, hold and suppression
        cool = self._cool
        fired = score > 1.0 and not warm and (cool == 0 or score > self._bar)
        if self._active and t_us - self._raised_us > self.hold_us:
            # Held long enough: the new level is the series' normal now.
            if fired:
                self._bar = _max(self._bar, score * self.rearm)
            fired = False
            self._active = False
            self._cool = self.refractory
        elif fired:
            keep = cool > 0 or self._active
            self._bar = _max(self._bar if keep else 0.0, score * self.rearm)
            if not self._active:
                self._code = code
                self._raised_us = t_us
            self._active = True
            self._held = 0
        elif self._active:
            self._held += 1
            if lu <= self.clear and la <= HOLD_LIKELIHOOD:
                self._active = False
                self._cool = self.refractory
        elif cool > 0:
            self._cool = cool - 1
        if stuck or self._active:
            self._marked = True

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
        ds = self._ss - self._mus
        self._mus += a_h * ds
        self._vs += a_h * (ds * ds - self._vs)
        a_u = a_h * slow
        da = self._sa - self._mua
        self._mua += a_u * da
        self._va += a_u * (da * da - self._va)
        du = self._su - self._muu
        if not warm and du * du > ROBUST_SD * ROBUST_SD * self._vu:
            a_u = a_u * SLOW
        self._muu += a_u * du
        self._vu += a_u * (du * du - self._vu)
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
            shift=_max(ls, lu),
            deviation=lu,
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
        if self._run <= STUCK_RUNS * self._runmax:
            return False
        p = _max(self._repeat, 1e-3)
        return self._run >= STUCK_ODDS / math.log(p)

    def snapshot(self) -> dict[str, Any]:
        """Return the state as plain data (JSON-able: None for NaN and inf)."""

        def num(v: float) -> float | None:
            return None if v != v or math.isinf(v) else v

        return {
            "n": self._n,
            "last": self._last,
            "res": num(self._res),
            "run": self._run,
            "runmax": self._runmax,
            "marked": self._marked,
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
            "hi": num(self._hi),
            "lo": num(self._lo),
            "hi_old": num(self._hi_old),
            "lo_old": num(self._lo_old),
            "persist": self._persist,
            "bar": self._bar,
            "active": self._active,
            "code": self._code,
            "held": self._held,
            "cool": self._cool,
            "raised": self._raised_us,
            "buckets": [num(b) for b in self._buckets],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot` (seasonal buckets of another count start fresh)."""

        def num(key: str, missing: float) -> float:
            v = state.get(key)
            return missing if v is None else float(v)

        self._n = int(state["n"])
        self._last = float(state["last"])
        self._res = num("res", math.inf)
        self._run = int(state["run"])
        self._runmax = int(state.get("runmax", 0))
        self._marked = bool(state.get("marked", False))
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
        # A snapshot of an earlier version has no recent range: start it here.
        self._hi = num("hi", self._last)
        self._lo = num("lo", self._last)
        self._hi_old = num("hi_old", self._last)
        self._lo_old = num("lo_old", self._last)
        self._persist = int(state.get("persist", 0))
        self._active = bool(state["active"])
        self._code = int(state["code"])
        self._held = int(state["held"])
        self._cool = int(state["cool"])
        self._raised_us = int(state.get("raised", 0))
        buckets = list(state.get("buckets") or [])
        self._buckets = _buckets(self.season_buckets)
        if len(buckets) == self.season_buckets:
            for i, b in enumerate(buckets):
                if b is not None:
                    self._buckets[i] = min(float(b), BUCKET_MAX)
