"""An anomaly detector's parameters and learnt state: checks, fresh values, snapshots.

:class:`AnomalyState` is the base of :class:`~dataflows.detectors.anomaly.AnomalyDetector`,
which adds the method (what one reading does). Here: the parameters (checked), what the
detector remembers between readings, how it starts, and how it is saved and loaded
(plain, JSON-able data).
"""

from __future__ import annotations

import math
from array import array
from typing import Any

__all__ = ["BUCKET_MAX", "SCALAR_FLOATS", "AnomalyState"]

SCALAR_FLOATS = (
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
)
"""The detector's float state restored by name (the scalar's ``_name`` attributes and
the bank's columns; ``last`` and ``repeat`` are handled on their own)."""

BUCKET_MAX = 3.4028234663852886e38
"""The seasonal buckets are float32 (half the memory of the detector's largest state):
each learnt value is capped at float32's largest finite value, then rounded to float32.
The cap touches only series whose errors exceed 1.8e19 (the bucket's RMS then floors
their RMS scale at 1.8e19 instead of more)."""


def _buckets(n: int) -> array[float]:
    """``n`` unlearnt (NaN) seasonal buckets, stored as float32."""
    return array("f", [math.nan]) * n


def _check(
    *,
    spike: float,
    spike_robust: float,
    likelihood: float,
    shift: float,
    clear: float,
    alpha: float,
    history: float,
    rearm: float,
    lows: tuple[int, ...],
) -> None:
    """Refuse parameters the detector cannot work with (ValueError)."""
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
    if min(lows) < 0:
        raise ValueError("warmup, hold_us, refractory and stuck_min cannot be negative")


class AnomalyState:
    """An anomaly detector's parameters and what it has learnt (see the module docstring)."""

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
        _check(
            spike=spike,
            spike_robust=spike_robust,
            likelihood=likelihood,
            shift=shift,
            clear=clear,
            alpha=alpha,
            history=history,
            rearm=rearm,
            lows=(warmup, hold_us, refractory, stuck_min),
        )
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
        self._fresh()

    @property
    def window(self) -> int:
        """Readings of history the likelihood and the RMS scale average over (~1/history)."""
        return round(1 / self.history)

    def _fresh(self) -> None:
        """Set the learnt state as before the first reading."""
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
            **{name: getattr(self, f"_{name}") for name in SCALAR_FLOATS},
            "hi": num(self._hi),
            "lo": num(self._lo),
            "hi_old": num(self._hi_old),
            "lo_old": num(self._lo_old),
            "persist": self._persist,
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
        for name in SCALAR_FLOATS:
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
