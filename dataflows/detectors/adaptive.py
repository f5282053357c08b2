"""An adaptive anomaly detector that learns each series online, with no configuration.

A robust running location and scale (an M-estimator: exponentially weighted, with
each step's residual clipped at ``huber`` scales, so one outlier moves neither by
much) give a robust z-score per reading: ``|value - level| / scale``. The scale is
the weighted mean absolute deviation times 1.2533 (the standard deviation for
Gaussian noise), floored at the series' observed resolution (the smallest non-zero
step between readings), so quantised and constant series do not alarm on one step.

The condition holds when z exceeds ``threshold`` and keeps holding until z falls
below ``clear`` (hysteresis). While it holds, the detector learns ten times slower
for ``hold`` readings (default 3 / alpha, three time constants), so a lasting
anomaly is not absorbed in seconds; after that it learns at the normal rate, so a
permanent change of regime is accepted as the new normal and the alarm clears. The
first ``warmup`` readings only teach (plain mean and mean absolute deviation) and
return no signal.

Seasonality, where the data allows: a level is also learnt per phase bucket of a
season (by default 24 hourly buckets of a day, from event time), with its own
residual scale. The seasonal level is used only once the series has two whole seasons
of history *and*, averaged over about one season, its typical residual is at least
30 % smaller than the plain level's; a series with a daily cycle then stops alarming on its own
cycle, and a short, non-seasonal or random-walk series is scored exactly as without
seasons. ``season_buckets = 0`` turns this off.

It also learns how often the series repeats its previous value exactly. A run of
identical readings that would be a one-in-a-million event at that repeat rate (and at
least ``stuck_min`` long) is a stuck sensor; series that usually repeat (quantised or
constant ones, repeat rate above 0.9) are never called stuck.

O(1) time and memory per reading (O(buckets) with seasons).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from contract.alarms import Severity
from dataflows.detectors.base import Signal

__all__ = ["AdaptiveDetector"]

_GAUSS_MAD = 1.2533  # sigma / mean absolute deviation for Gaussian noise
_STUCK_ODDS = math.log(1e-6)
_STUCK_MAX_REPEAT_RATE = 0.9
_SEASON_GAIN = 0.7  # seasons must cut the typical residual by 30 % to be used


class _Score(NamedTuple):
    """How one reading scores: against which level, at which scale."""

    level: float
    seasonal: float
    in_use: bool
    """Whether the season's level is the one the reading is judged against."""
    expected: float
    sigma_plain: float
    sigma_season: float
    z: float


class AdaptiveDetector:
    """Robust online z-score detector (see the module docstring)."""

    __slots__ = (
        "_active",
        "_first_t",
        "_held",
        "_last",
        "_last_t",
        "_level",
        "_n",
        "_perr",
        "_repeat",
        "_res",
        "_run",
        "_scale",
        "_season",
        "_serr",
        "_sscale",
        "alpha",
        "clear",
        "hold",
        "huber",
        "season_buckets",
        "season_us",
        "stuck_min",
        "threshold",
        "warmup",
    )

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
        if not 0 < clear <= threshold:
            raise ValueError(f"need 0 < clear <= threshold; got {clear}, {threshold}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1); got {alpha}")
        self.threshold = threshold
        self.clear = clear
        self.alpha = alpha
        self.warmup = max(2, warmup)
        self.huber = huber
        self.season_us = season_us if season_buckets > 0 else None
        self.season_buckets = season_buckets if season_us else 0
        self.stuck_min = stuck_min
        self.hold = round(3 / alpha) if hold is None else hold
        self._held = 0
        self._n = 0
        self._repeat = 0.0
        self._run = 0
        self._level = 0.0
        self._scale = 0.0
        self._sscale = math.inf
        self._perr = self._serr = 0.0
        self._last_t: int | None = None
        self._res = math.inf
        self._last: float | None = None
        self._active = False
        self._season: list[float | None] = [None] * self.season_buckets
        self._first_t: int | None = None

    def _bucket(self, t_us: int) -> int | None:
        if self.season_us is None:
            return None
        phase = t_us % self.season_us
        return phase * self.season_buckets // self.season_us

    def update(self, t_us: int, value: float) -> Signal | None:
        """Take one reading; None while warming up."""
        same = self._repeats(value)
        bucket = self._bucket(t_us)
        if self._first_t is None:
            self._first_t = t_us
        if self._n < self.warmup:
            self._n += 1
            self._level += (value - self._level) / self._n
            self._scale += (abs(value - self._level) - self._scale) / self._n
            self._repeat += (same - self._repeat) / self._n
            return None
        stuck = self._stuck()
        if not stuck:
            self._repeat += self.alpha * (same - self._repeat)
        score = self._score(t_us, bucket, value)
        self._active = score.z > (self.clear if self._active else self.threshold)
        if stuck:
            return Signal(
                True,
                value,
                None,
                f"stuck at {value:g} for {self._run + 1} readings (repeat rate {self._repeat:.2f})",
            )
        self._learn(t_us, bucket, value, score)
        z, level = score.z, score.expected
        if not self._active:
            return Signal(False, value, z)
        severity = Severity.MAJOR if z > 2 * self.threshold else None
        return Signal(
            True,
            value,
            level,
            f"{value:g} is {z:.1f} robust sigmas from the learnt level {level:.4g}",
            severity,
        )

    def _repeats(self, value: float) -> bool:
        """Count repeats of the last value, learn the resolution; say if ``value`` repeats."""
        last = self._last
        self._last = value
        same = last is not None and value == last
        if last is not None and not same:
            step = abs(value - last)
            if step < self._res:
                self._res = step
        self._run = self._run + 1 if same else 0
        return same

    def _score(self, t_us: int, bucket: int | None, value: float) -> _Score:
        """Score ``value`` against the plain level, or the season's where it is in use."""
        level = self._level
        if math.isinf(self._sscale):
            self._sscale = self._scale
        floor = max(self._res if math.isfinite(self._res) else 0.0, 1e-9 * abs(level), 1e-12)
        sigma_plain = max(_GAUSS_MAD * self._scale, floor)
        sigma_season = max(_GAUSS_MAD * self._sscale, floor)
        seasonal = level
        in_use = False
        if bucket is not None and self.season_us is not None:
            known = self._season[bucket]
            seasonal = level if known is None else known
            # Seasons are used only with two seasons of history and only where they
            # explain the series clearly better than the plain level does.
            assert self._first_t is not None  # set by update before any score
            in_use = (
                t_us - self._first_t >= 2 * self.season_us
                and self._serr < _SEASON_GAIN * self._perr
            )
        expected = seasonal if in_use else level
        sigma = sigma_season if in_use else sigma_plain
        z = abs(value - expected) / sigma
        return _Score(level, seasonal, in_use, expected, sigma_plain, sigma_season, z)

    def _learn(self, t_us: int, bucket: int | None, value: float, score: _Score) -> None:
        """Learn the level and scale (slowly while an alarm holds) and the season's."""
        self._held = self._held + 1 if self._active else 0
        a = self.alpha * (0.1 if 0 < self._held <= self.hold else 1.0)
        level = score.level
        cap = self.huber * score.sigma_plain
        plain = value - level
        self._scale += a * (min(abs(plain), cap) - self._scale)
        self._level += a * max(-cap, min(cap, plain))
        if bucket is not None and self.season_us is not None:
            # The level of this phase of the season. Each bucket sees 1/buckets of the
            # data, so it learns faster; until seasons are in use, alarms judged on the
            # plain level must not slow it, nor clip it (a cycle may be many scales tall).
            seasonal = score.seasonal
            step = value - seasonal
            scap = self.huber * score.sigma_season
            if score.in_use:
                self._season[bucket] = seasonal + a * 4 * max(-scap, min(scap, step))
            else:
                self._season[bucket] = seasonal + self.alpha * 4 * step
            self._sscale += a * (min(abs(step), scap) - self._sscale)
            # Which model explains the series better, averaged over about one season.
            w = min(1.0, max(0, t_us - self._last_t) / self.season_us) if self._last_t else 0.0
            big = 10 * cap
            self._perr += w * (min(abs(plain), big) - self._perr)
            self._serr += w * (min(abs(step), big) - self._serr)
        self._last_t = t_us

    def _stuck(self) -> bool:
        if self._run < self.stuck_min or self._repeat > _STUCK_MAX_REPEAT_RATE:
            return False
        p = max(self._repeat, 1e-3)
        return self._run >= _STUCK_ODDS / math.log(p)

    def snapshot(self) -> dict[str, Any]:
        """Return the state as plain data."""
        return {
            "n": self._n,
            "repeat": self._repeat,
            "run": self._run,
            "held": self._held,
            "level": self._level,
            "scale": self._scale,
            "sscale": None if math.isinf(self._sscale) else self._sscale,
            "perr": self._perr,
            "serr": self._serr,
            "last_t": self._last_t,
            "res": None if math.isinf(self._res) else self._res,
            "last": self._last,
            "active": self._active,
            "season": list(self._season),
            "first": self._first_t,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot`."""
        self._n = state["n"]
        self._repeat = state.get("repeat", 0.0)
        self._run = state.get("run", 0)
        self._held = state.get("held", 0)
        self._level = state["level"]
        self._scale = state["scale"]
        sscale = state.get("sscale")
        self._sscale = math.inf if sscale is None else sscale
        self._perr = state.get("perr", 0.0)
        self._serr = state.get("serr", 0.0)
        self._last_t = state.get("last_t")
        self._res = math.inf if state["res"] is None else state["res"]
        self._last = state["last"]
        self._active = state["active"]
        self._first_t = state.get("first")
        season = list(state.get("season") or [])
        if len(season) == self.season_buckets:
            self._season = season
