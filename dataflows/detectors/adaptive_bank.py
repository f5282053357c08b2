"""The adaptive detector over many series at once, its state in arrays.

:class:`AdaptiveBank` is the vectorised twin of
:class:`~dataflows.detectors.adaptive.AdaptiveDetector` (read that module for what the
detector does). Fed the same readings of a slot in the same order, it says exactly what
the scalar detector says of each one: same validity, condition, value, threshold,
severity and message. Every floating-point step is the scalar's own operation in the
scalar's order, Python's ``min``/``max`` included (they pick an argument by one
comparison, which matters once a value overflows to inf or NaN), so the results are
bit-identical. The one library function, ``log`` in the stuck test, may differ from
:func:`math.log` in the last bit, so the rare comparisons that land within a hair of
the boundary are redone with :func:`math.log`.

State per slot: scalars in 1-D arrays; the seasonal levels in a 2-D array
``[slot, bucket]`` holding NaN where a bucket has not been learnt yet, with a boolean
twin marking the learnt levels that overflowed to NaN (the scalar keeps those as NaN
rather than as unknown).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from contract.alarms import Severity
from dataflows.detectors._slots import Field, SlotBank
from dataflows.detectors._twins import py_max as _max
from dataflows.detectors._twins import py_min as _min
from dataflows.detectors._twins import stuck_runs
from dataflows.detectors.adaptive import (  # its constants too: the very same numbers
    _GAUSS_MAD,
    _SEASON_GAIN,
    _STUCK_MAX_REPEAT_RATE,
    _STUCK_ODDS,
    AdaptiveDetector,
)
from dataflows.detectors.bank import F64, I64, SEVERITY_CODES, BankSignals, Bools

__all__ = ["AdaptiveBank"]

_MAJOR = np.int8(SEVERITY_CODES.index(Severity.MAJOR))
_log = np.log  # a module attribute, so a test can make it err by an ulp


def _fields(buckets: int) -> dict[str, Field]:
    return {
        "n": (np.int64, 0, ()),  # readings learnt in warmup (stops at warmup)
        "seen": (np.bool_, False, ()),
        "last": (np.float64, 0.0, ()),
        "res": (np.float64, math.inf, ()),
        "run": (np.int64, 0, ()),
        "repeat": (np.float64, 0.0, ()),
        "held": (np.int64, 0, ()),
        "level": (np.float64, 0.0, ()),
        "scale": (np.float64, 0.0, ()),
        "sscale": (np.float64, math.inf, ()),
        "perr": (np.float64, 0.0, ()),
        "serr": (np.float64, 0.0, ()),
        # 0 stands for "none" too: the scalar tests its last time for truth.
        "last_t": (np.int64, 0, ()),
        "first_t": (np.int64, 0, ()),
        "active": (np.bool_, False, ()),
        "season": (np.float64, math.nan, (buckets,)),
        "season_nan": (np.bool_, False, (buckets,)),
    }


class _Season(NamedTuple):
    """The season's side of a chunk of readings (``cell``: flat [slot, bucket] index)."""

    cell: I64
    known: F64
    seasonal: F64
    in_use: Bools
    perr: F64
    serr: F64


class _SeasonLearning(NamedTuple):
    """What the season learns from, besides the season itself."""

    v: F64
    t: I64
    stuck: Bools
    rate: F64
    sigma_season: F64
    cap: F64
    distance: F64
    last_t: I64


class AdaptiveBank(SlotBank):
    """:class:`~dataflows.detectors.adaptive.AdaptiveDetector` over many slots.

    Takes the scalar detector's parameters (and validates them the same way).
    ``detail`` of its signals: ``z`` (the robust z-score, NaN in warmup), ``stuck``,
    ``run`` (repeats of the previous value) and ``repeat`` (the learnt repeat rate).
    """

    def __init__(
        self,
        *,
        threshold: float = 6.0,
        clear: float = 3.0,
        alpha: float = 0.01,
        warmup: int = 60,
        huber: float = 3.0,
        season_us: int | None = 86_400_000_000,
        season_buckets: int = 24,
        stuck_min: int = 10,
        hold: int | None = None,
    ) -> None:
        # The scalar detector checks and normalises the parameters: one set of rules.
        spec = AdaptiveDetector(
            threshold=threshold,
            clear=clear,
            alpha=alpha,
            warmup=warmup,
            huber=huber,
            season_us=season_us,
            season_buckets=season_buckets,
            stuck_min=stuck_min,
            hold=hold,
        )
        self.threshold = float(spec.threshold)
        self.clear = float(spec.clear)
        self.alpha = float(spec.alpha)
        self.warmup = int(spec.warmup)
        self.huber = float(spec.huber)
        self.season_us = spec.season_us
        self.season_buckets = spec.season_buckets
        self.stuck_min = int(spec.stuck_min)
        self.hold = int(spec.hold)
        if self.season_us is not None and (
            self.season_us >= 2**53 or self.season_us * self.season_buckets >= 2**62
        ):
            raise ValueError(
                "season_us times season_buckets must stay below 2**62 (and the season"
                f" below 2**53 us); got {self.season_us} us and {self.season_buckets}"
            )
        self._slow = self.alpha * 0.1
        self._fast = self.alpha * 1.0
        self._alpha4 = self.alpha * 4
        self._major = 2 * self.threshold
        super().__init__(_fields(self.season_buckets))

    def update(self, slots: I64, t_us: I64, values: F64) -> BankSignals:
        """Take one reading per slot (``slots`` distinct); return their signals."""
        slots = np.asarray(slots, np.int64)
        t = np.asarray(t_us, np.int64)
        v = np.asarray(values, np.float64)
        n = len(slots)
        a = self._state.arrays
        with np.errstate(all="ignore"):
            seen = a["seen"][slots]
            last = a["last"][slots]
            same = seen & (v == last)
            step = np.abs(v - last)
            res = a["res"][slots]
            res = np.where(seen & ~same & (step < res), step, res)
            run = np.where(same, a["run"][slots] + 1, 0)
            first_t = np.where(seen, a["first_t"][slots], t)
            a["seen"][slots] = True
            a["last"][slots] = v
            a["res"][slots] = res
            a["run"][slots] = run
            a["first_t"][slots] = first_t
            count = a["n"][slots]
            warm = count < self.warmup

            z = np.full(n, np.nan)
            active = np.zeros(n, np.bool_)
            threshold = np.full(n, np.nan)
            severity = np.zeros(n, np.int8)
            stuck = np.zeros(n, np.bool_)
            repeat = np.empty(n)
            if warm.all():
                repeat[:] = self._warm(slots, v, same, count)
            else:
                p: Any = slice(None)
                if warm.any():
                    w = np.flatnonzero(warm)
                    repeat[w] = self._warm(slots[w], v[w], same[w], count[w])
                    p = np.flatnonzero(~warm)
                    out = self._learn(slots[p], t[p], v[p], same[p], run[p], res[p], first_t[p])
                else:
                    out = self._learn(slots, t, v, same, run, res, first_t)
                z[p], active[p], threshold[p], severity[p], stuck[p], repeat[p] = out
        detail = {"z": z, "stuck": stuck, "run": run, "repeat": repeat}
        return BankSignals(~warm, active, v, threshold, severity, detail)

    def _warm(self, s: I64, v: F64, same: Bools, count: I64) -> F64:
        """Warmup: plain running mean and mean absolute deviation; return the repeat rate."""
        a = self._state.arrays
        k = count + 1
        level = a["level"][s]
        level = level + (v - level) / k
        scale = a["scale"][s]
        scale = scale + (np.abs(v - level) - scale) / k
        repeat = a["repeat"][s]
        repeat = repeat + (same.astype(np.float64) - repeat) / k
        a["n"][s] = k
        a["level"][s] = level
        a["scale"][s] = scale
        a["repeat"][s] = repeat
        return np.asarray(repeat, np.float64)

    def _stuck(self, run: I64, repeat: F64) -> Bools:
        """Apply the scalar's stuck test: a run of repeats too unlikely at the repeat rate."""
        stuck = ~(run < self.stuck_min) & ~(repeat > _STUCK_MAX_REPEAT_RATE)
        return stuck_runs(stuck, run, repeat, _STUCK_ODDS, _log)

    def _learn(
        self, s: I64, t: I64, v: F64, same: Bools, run: I64, res: F64, first_t: I64
    ) -> tuple[F64, Bools, F64, Any, Bools, F64]:
        """Score and learn past warmup; return z, active, threshold, severity, stuck, repeat."""
        a = self._state.arrays
        repeat = a["repeat"][s]
        stuck = self._stuck(run, repeat)
        repeat = np.where(stuck, repeat, repeat + self.alpha * (same.astype(np.float64) - repeat))
        level = a["level"][s]
        scale = a["scale"][s]
        sscale = a["sscale"][s]
        sscale = np.where(np.isinf(sscale), scale, sscale)
        floor = _max(_max(np.where(np.isfinite(res), res, 0.0), 1e-9 * np.abs(level)), 1e-12)
        sigma_plain = _max(_GAUSS_MAD * scale, floor)
        sigma_season = _max(_GAUSS_MAD * sscale, floor)
        season = None if self.season_us is None else self._season(s, t, first_t, level)
        if season is not None:
            in_use = season.in_use
            expected = np.where(in_use, season.seasonal, level)
            sigma = np.where(in_use, sigma_season, sigma_plain)
        else:
            expected, sigma = level, sigma_plain
        z = np.abs(v - expected) / sigma
        active = z > np.where(a["active"][s], self.clear, self.threshold)
        a["active"][s] = active
        a["repeat"][s] = repeat

        # Learning, which a stuck reading skips: where(stuck, old, new) throughout.
        held_old = a["held"][s]
        held = np.where(active, held_old + 1, 0)
        rate = np.where((held > 0) & (held <= self.hold), self._slow, self._fast)
        cap = self.huber * sigma_plain
        plain = v - level
        distance = np.abs(plain)
        a["held"][s] = np.where(stuck, held_old, held)
        a["scale"][s] = np.where(stuck, scale, scale + rate * (_min(distance, cap) - scale))
        a["level"][s] = np.where(stuck, level, level + rate * _max(-cap, _min(cap, plain)))
        last_t = a["last_t"][s]
        if season is not None:
            learn = _SeasonLearning(v, t, stuck, rate, sigma_season, cap, distance, last_t)
            sscale = self._learn_season(s, season, learn, sscale)
        a["sscale"][s] = sscale
        a["last_t"][s] = np.where(stuck, last_t, t)

        threshold = np.where(stuck, np.nan, np.where(active, expected, z))
        severity = np.where(active & ~stuck & (z > self._major), _MAJOR, np.int8(0))
        return z, active | stuck, threshold, severity, stuck, repeat

    def _season(self, s: I64, t: I64, first_t: I64, level: F64) -> _Season:
        """Look up the season's level of each reading; say where seasons are in use."""
        a = self._state.arrays
        season_us = self.season_us
        assert season_us is not None
        # Flat indices into the [slot, bucket] arrays: one 1-D gather and scatter.
        cell = s * self.season_buckets + (t % season_us) * self.season_buckets // season_us
        known = a["season"].reshape(-1)[cell]
        unknown = np.isnan(known)
        if unknown.any():  # rare once learnt: is any of these NaN a learnt NaN?
            unknown &= ~a["season_nan"].reshape(-1)[cell]
        perr = a["perr"][s]
        serr = a["serr"][s]
        in_use = (t - first_t >= 2 * season_us) & (serr < _SEASON_GAIN * perr)
        return _Season(cell, known, np.where(unknown, level, known), in_use, perr, serr)

    def _learn_season(self, s: I64, season: _Season, learn: _SeasonLearning, sscale: F64) -> F64:
        """Learn the seasons' levels, scale and errors (not where stuck); return the scale."""
        a = self._state.arrays
        season_us = self.season_us
        assert season_us is not None
        stuck, rate, seasonal = learn.stuck, learn.rate, season.seasonal
        step = learn.v - seasonal
        scap = self.huber * learn.sigma_season
        learnt = np.where(
            season.in_use,
            seasonal + rate * 4 * _max(-scap, _min(scap, step)),
            seasonal + self._alpha4 * step,
        )
        learnt = np.where(stuck, season.known, learnt)
        a["season"].reshape(-1)[season.cell] = learnt
        # A learnt NaN stays NaN (NaN plus anything), so the flag is only ever set.
        overflowed = np.isnan(learnt) & ~stuck
        if overflowed.any():
            a["season_nan"].reshape(-1)[season.cell[overflowed]] = True
        step_size = np.abs(step)
        sscale = np.where(stuck, sscale, sscale + rate * (_min(step_size, scap) - sscale))
        gap = learn.t - learn.last_t
        w = _min(1.0, np.where(gap > 0, gap, 0) / season_us)
        w = np.where(learn.last_t != 0, w, 0.0)
        big = 10 * learn.cap
        perr, serr = season.perr, season.serr
        a["perr"][s] = np.where(stuck, perr, perr + w * (_min(learn.distance, big) - perr))
        a["serr"][s] = np.where(stuck, serr, serr + w * (_min(step_size, big) - serr))
        return np.asarray(sscale, np.float64)

    def describe(self, signals: BankSignals, i: int) -> str:
        """Word entry ``i`` as the scalar detector does ("" where not active)."""
        if not (signals.valid[i] and signals.active[i]):
            return ""
        value = float(signals.value[i])
        detail = signals.detail
        if detail["stuck"][i]:
            run, repeat = int(detail["run"][i]), float(detail["repeat"][i])
            return f"stuck at {value:g} for {run + 1} readings (repeat rate {repeat:.2f})"
        z, level = float(detail["z"][i]), float(signals.threshold[i])
        return f"{value:g} is {z:.1f} robust sigmas from the learnt level {level:.4g}"
