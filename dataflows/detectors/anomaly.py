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
from typing import NamedTuple

from contract.alarms import Severity
from dataflows.detectors.anomaly_state import BUCKET_MAX, AnomalyState
from dataflows.detectors.anomaly_words import COMPONENTS, describe_anomaly
from dataflows.detectors.base import Signal

__all__ = ["BUCKET_MAX", "COMPONENTS", "AnomalyDetector", "describe_anomaly"]

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


def _clip(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else (hi if v > hi else v)


def _max(a: float, b: float) -> float:
    return b if b > a else a


def _min(a: float, b: float) -> float:
    return b if b < a else a


class _Errors(NamedTuple):
    """Phases 1-2 of a reading: its prediction and normalised errors."""

    level: float
    base: float
    expected: float
    e: float
    e2: float
    sig_e: float
    sig_b: float
    z: float
    u: float
    sr: float
    z_rms: float


class _Components(NamedTuple):
    """Phase 3 of a reading: likelihoods and the component scores."""

    la: float
    ls: float
    lu: float
    score: float
    code: int


class AnomalyDetector(AnomalyState):
    """The default anomaly detector of a series (see the module docstring)."""

    __slots__ = ()

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
        same = self._runs(x)
        n = self._n = self._n + 1
        warm = n <= self.warmup
        inv = 1.0 / n
        err = self._errors(t_us, x, last)
        comp = self._components(x, n, err)
        stuck = self._stuck()
        if not stuck:
            self._repeat += _max(ERR_ALPHA, inv) * (float(same) - self._repeat)
        fired = self._decide(t_us, comp, warm, stuck)
        self._learn(x, inv, warm, err)
        if warm:
            return None
        return self._signal(value, err, comp, fired, stuck)

    def _runs(self, x: float) -> bool:
        """Count repeats of the last value, learn the resolution; say if ``x`` repeats."""
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
        return same

    def _errors(self, t_us: int, x: float, last: float) -> _Errors:
        """Phase 1-2: predict ``x``, normalise its error; learn the season's bucket."""
        res = self._res if self._res < math.inf else 0.0
        floor = _max(_max(res, 1e-9 * abs(self._base)), 1e-12)
        level = self._level
        phi = _clip(self._c1 / self._c0, 0.0, 1.0) if self._c0 > 0 else 0.0
        expected = level + phi * (last - level)
        e = x - expected
        sig_e = _max(GAUSS_MAD * self._mad_e, floor)
        sig_b = _max(GAUSS_MAD * self._mad_b, floor)
        base = self._base
        sr = _max(math.sqrt(self._vr), floor)
        e2 = e * e
        bucket = self._bucket(t_us)
        if bucket >= 0:
            known = self._buckets[bucket]
            if known == known:
                sr = _max(sr, math.sqrt(known))
            learnt = e2 if known != known else known + BUCKET_ALPHA * (e2 - known)
            # The array rounds to float32; the cap keeps a huge error finite.
            self._buckets[bucket] = learnt if learnt < BUCKET_MAX else BUCKET_MAX
        z, u = e / sig_e, (x - base) / sig_b
        return _Errors(level, base, expected, e, e2, sig_e, sig_b, z, u, sr, e / sr)

    def _components(self, x: float, n: int, err: _Errors) -> _Components:
        """Phase 3: the component scores (and the short averages and recent range)."""
        z = err.z
        zc = _clip(z, -Z_CAP, Z_CAP)
        self._sa += SHORT_ALPHA * (abs(zc) - self._sa)
        self._ss += SIGN_ALPHA * (zc - self._ss)
        la = (self._sa - self._mua) / math.sqrt(self._va) if self._va > 0 else 0.0
        ls = abs(self._ss - self._mus) / math.sqrt(self._vs) if self._vs > 0 else 0.0
        self._su += SIGN_ALPHA * (_clip(err.u, -Z_CAP, Z_CAP) - self._su)
        lu = abs(self._su - self._muu) / math.sqrt(self._vu) if self._vu > 0 else 0.0
        s1 = abs(err.z_rms) / self.spike if abs(z) > self.spike_robust else 0.0
        s2 = la / self.likelihood
        s3 = _max(ls, lu) / self.shift
        self._persist = self._persist + 1 if lu > PERSIST_SD else 0
        if self._persist >= PERSIST_N:
            s3 = _max(s3, lu / PERSIST_SD)
        s5 = self._extreme(x, n, z)
        score = _max(_max(_max(s1, s5), s2), s3)
        if s1 >= 1.0 or s1 >= score:
            code = 1
        elif s5 >= score:
            code = 5
        else:
            code = 2 if s2 >= score else 3
        return _Components(la, ls, lu, score, code)

    def _extreme(self, x: float, n: int, z: float) -> float:
        """Return the new-extreme score; move the recent range on to include ``x``."""
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
        return s5

    def _decide(self, t_us: int, comp: _Components, warm: bool, stuck: bool) -> bool:
        """Phase 4: fire, hold, end or cool down; return whether this reading fired."""
        score = comp.score
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
                self._code = comp.code
                self._raised_us = t_us
            self._active = True
            self._held = 0
        elif self._active:
            self._held += 1
            if comp.lu <= self.clear and comp.la <= HOLD_LIKELIHOOD:
                self._active = False
                self._cool = self.refractory
        elif cool > 0:
            self._cool = cool - 1
        if stuck or self._active:
            self._marked = True
        return fired

    def _learn(self, x: float, inv: float, warm: bool, err: _Errors) -> None:
        """Phase 5: learn level, baseline and histories (ten times slower while active)."""

        def rate(a: float) -> float:
            return _max(a, inv)

        slow = SLOW if self._active else 1.0
        level, base = err.level, err.base
        d = x - level
        a_e = rate(ERR_ALPHA)
        self._c0 += a_e * (d * d - self._c0)
        self._c1 += a_e * (d * self._dlast - self._c1)
        self._level = level + rate(self.alpha) * d
        self._dlast = x - self._level
        self._mad_e += a_e * (_min(abs(err.e), HUBER * err.sig_e) - self._mad_e)
        cap_b = HUBER * err.sig_b
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
        cap_r = RMS_CAP * err.sr
        self._vr += a_h * (_min(err.e2, cap_r * cap_r) - self._vr)

    def _signal(
        self, value: float, err: _Errors, comp: _Components, fired: bool, stuck: bool
    ) -> Signal:
        """Say what this reading (past warmup) shows."""
        active = self._active or stuck
        if not active:
            return Signal(False, value, err.expected)
        severity = Severity.MAJOR if (fired and comp.score > 2.0) and not stuck else None
        message = describe_anomaly(
            value=value,
            expected=err.expected,
            band=self.spike * err.sr,
            code=4 if stuck and not self._active else (comp.code if fired else self._code),
            score=comp.score,
            z=err.z_rms,
            likelihood=comp.la,
            shift=_max(comp.ls, comp.lu),
            deviation=comp.lu,
            baseline=err.base,
            held=0 if fired else self._held,
            run=self._run,
            repeat=self._repeat,
            history=self.window,
        )
        return Signal(True, value, err.expected, message, severity)

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
