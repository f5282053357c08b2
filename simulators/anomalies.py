"""Anomaly injection: faults laid over clean signals, with their ground truth.

Kinds, and what the readings inside the labelled interval look like (``m`` is the
magnitude; when it is not given it defaults to a multiple of the model's ``scale``):

================  ===================================================================
``spike``         clean value + m (default 10 x scale), usually one reading long
``level_shift``   clean value + m (default 5 x scale)
``drift``         clean value + m x (i + 1) / n for the i-th of n readings (default
                  10 x scale): a ramp that reaches m at the last reading
``stuck``         the first clean value inside the interval, repeated (zero variance)
``noise_burst``   clean value + Gaussian noise of standard deviation m (default 5 x
                  scale)
``out_of_range``  the model's valid upper bound + m (default 10 % of the valid range);
                  a negative m gives the lower bound + m instead
``dropout``       no readings at all: the device publishes nothing (metric ``"*"``)
================  ===================================================================

Anomalies are scheduled explicitly (:class:`ScheduledAnomaly`, an offset from the
start of the run, repeated every ``every_s`` seconds when given) or at random
(:class:`RandomAnomalies`, a Poisson rate per device per hour, one at a time per
device). Windows are counted in a device's ticks, so a
label's bounds are exactly the times of the first affected reading and of the first
reading after it: the data is affected exactly on ``[start, end)``. The anomaly
random generator of a device is its own, so injecting anomalies never changes the
clean values outside the labelled intervals.
"""

from __future__ import annotations

import bisect
import fnmatch
import math
import random
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ActiveAnomaly",
    "AnomalyKind",
    "AnomalyPlan",
    "RandomAnomalies",
    "ScheduledAnomaly",
    "apply_anomaly",
    "default_magnitude",
    "parse_anomaly_spec",
]


class AnomalyKind(StrEnum):
    """The kinds of injected anomaly."""

    SPIKE = "spike"
    LEVEL_SHIFT = "level_shift"
    DRIFT = "drift"
    STUCK = "stuck"
    NOISE_BURST = "noise_burst"
    DROPOUT = "dropout"
    OUT_OF_RANGE = "out_of_range"


ALL_METRICS = "*"
_SCALE_FACTORS = {
    AnomalyKind.SPIKE: 10.0,
    AnomalyKind.LEVEL_SHIFT: 5.0,
    AnomalyKind.DRIFT: 10.0,
    AnomalyKind.NOISE_BURST: 5.0,
}
# Kinds whose default sign is drawn at random for random anomalies.
_SIGNED = {AnomalyKind.SPIKE, AnomalyKind.LEVEL_SHIFT, AnomalyKind.DRIFT}


def default_magnitude(kind: AnomalyKind, scale: float, valid_range: tuple[float, float]) -> float:
    """Return the magnitude used when none is given."""
    if kind is AnomalyKind.OUT_OF_RANGE:
        return 0.1 * (valid_range[1] - valid_range[0])
    return _SCALE_FACTORS.get(kind, 0.0) * scale


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    site: str = "*"
    """Glob of the sites it applies to."""
    device: str = "*"
    """Glob of the devices it applies to."""
    magnitude: float | None = None

    def applies_to(self, site: str, device: str) -> bool:
        """Whether the spec selects this device."""
        return fnmatch.fnmatchcase(site, self.site) and fnmatch.fnmatchcase(device, self.device)


class ScheduledAnomaly(_Spec):
    """One anomaly at ``at_s`` seconds after the start, lasting ``duration_s``."""

    kind: AnomalyKind
    at_s: Annotated[float, Field(ge=0)]
    duration_s: Annotated[float, Field(gt=0)] | None = None
    """Default: one interval (one reading)."""
    metric: str = ALL_METRICS
    """The metric it affects; ``"*"`` means every metric of the device."""
    every_s: Annotated[float, Field(gt=0)] | None = None
    """Repeat it this often (from one start to the next) until the run ends; None: once."""

    @model_validator(mode="after")
    def _repeat_after_the_end(self) -> ScheduledAnomaly:
        every, duration = self.every_s, self.duration_s
        if every is not None and duration is not None and every <= duration:
            raise ValueError("every_s must be longer than duration_s")
        return self


class RandomAnomalies(_Spec):
    """Anomalies at random: a Poisson process of ``rate_per_hour`` per device."""

    kinds: Annotated[tuple[AnomalyKind, ...], Field(min_length=1)] = tuple(AnomalyKind)
    rate_per_hour: Annotated[float, Field(gt=0)]
    min_duration_s: Annotated[float, Field(gt=0)] = 30.0
    max_duration_s: Annotated[float, Field(gt=0)] = 300.0
    metrics: tuple[str, ...] = ()
    """The metrics to pick from (default: all of the device's)."""

    @model_validator(mode="after")
    def _durations(self) -> RandomAnomalies:
        if self.min_duration_s > self.max_duration_s:
            raise ValueError("expected min_duration_s <= max_duration_s")
        return self


@dataclass(slots=True)
class ActiveAnomaly:
    """An anomaly bound to one device: ticks ``[first_tick, end_tick)``."""

    kind: AnomalyKind
    metric: str
    first_tick: int
    end_tick: int
    magnitude: float
    stuck_value: float | None = None
    every_ticks: int = 0
    """Ticks from this start to the next occurrence (0: once)."""


def apply_anomaly(
    anomaly: ActiveAnomaly,
    value: float,
    tick: int,
    rng: random.Random,
    valid_range: tuple[float, float],
) -> float:
    """Return ``value`` as the anomaly makes it look at ``tick``."""
    kind = anomaly.kind
    m = anomaly.magnitude
    if kind is AnomalyKind.SPIKE or kind is AnomalyKind.LEVEL_SHIFT:
        return value + m
    if kind is AnomalyKind.DRIFT:
        n = anomaly.end_tick - anomaly.first_tick
        return value + m * (tick - anomaly.first_tick + 1) / n
    if kind is AnomalyKind.STUCK:
        if anomaly.stuck_value is None:
            anomaly.stuck_value = value
        return anomaly.stuck_value
    if kind is AnomalyKind.NOISE_BURST:
        return value + rng.gauss(0.0, m)
    if kind is AnomalyKind.OUT_OF_RANGE:
        return valid_range[1] + m if m >= 0 else valid_range[0] + m
    return value  # dropout is handled by the device: nothing is published


class AnomalyPlan:
    """The anomalies of one device, activated tick by tick.

    ``interval_s`` is the device's interval and ``phase_s`` the offset of its first
    tick from the start of the run; ``models`` gives each metric's ``scale`` and
    ``valid_range``, from which default magnitudes are worked out.
    """

    __slots__ = (
        "_next_random",
        "_pending",
        "_random",
        "_random_busy_until",
        "active",
        "interval_s",
        "metrics",
        "models",
        "rng",
    )

    def __init__(
        self,
        *,
        site: str,
        device: str,
        models: dict[str, tuple[float, tuple[float, float]]],
        interval_s: float,
        phase_s: float,
        scheduled: tuple[ScheduledAnomaly, ...],
        random_specs: tuple[RandomAnomalies, ...],
        rng: random.Random,
    ) -> None:
        self.interval_s = interval_s
        self.models = models
        self.metrics = metrics = tuple(models)
        self.rng = rng
        self.active: list[ActiveAnomaly] = []
        pending = []
        for spec in scheduled:
            if not spec.applies_to(site, device):
                continue
            if spec.metric != ALL_METRICS and spec.metric not in metrics:
                continue
            first = max(0, math.ceil((spec.at_s - phase_s) / interval_s - 1e-9))
            ticks = self._ticks(spec.duration_s)
            every = 0 if spec.every_s is None else max(ticks + 1, self._ticks(spec.every_s))
            if spec.kind is AnomalyKind.DROPOUT:
                names: tuple[str, ...] = (ALL_METRICS,)
            else:
                names = metrics if spec.metric == ALL_METRICS else (spec.metric,)
            for name in names:
                magnitude = self._magnitude(spec.kind, name, spec.magnitude, 1.0)
                pending.append(
                    ActiveAnomaly(spec.kind, name, first, first + ticks, magnitude, None, every)
                )
        pending.sort(key=lambda a: a.first_tick, reverse=True)  # pop() takes the earliest
        self._pending = pending
        self._random = tuple(s for s in random_specs if s.applies_to(site, device))
        self._random_busy_until = 0
        self._next_random = self._draw_next(0) if self._random else math.inf

    def _magnitude(self, kind: AnomalyKind, metric: str, given: float | None, sign: float) -> float:
        if given is not None:
            return given
        if metric not in self.models:
            return 0.0
        scale, valid_range = self.models[metric]
        return sign * default_magnitude(kind, scale, valid_range)

    def _ticks(self, duration_s: float | None) -> int:
        if duration_s is None:
            return 1
        return max(1, math.ceil(duration_s / self.interval_s - 1e-9))

    def _draw_next(self, after_tick: int) -> float:
        rate_per_tick = sum(s.rate_per_hour for s in self._random) * self.interval_s / 3600.0
        return after_tick + math.ceil(self.rng.expovariate(rate_per_tick))

    def _random_anomaly(self, tick: int) -> ActiveAnomaly | None:
        weights = [s.rate_per_hour for s in self._random]
        spec = self.rng.choices(self._random, weights)[0]
        kind = self.rng.choice(spec.kinds)
        candidates = [m for m in (spec.metrics or self.metrics) if m in self.metrics]
        duration = self.rng.uniform(spec.min_duration_s, spec.max_duration_s)
        ticks = 1 if kind is AnomalyKind.SPIKE else self._ticks(duration)
        if kind is AnomalyKind.DROPOUT:
            metric = ALL_METRICS
        elif candidates:
            metric = self.rng.choice(candidates)
        else:
            return None
        sign = -1.0 if kind in _SIGNED and self.rng.random() < 0.5 else 1.0
        magnitude = self._magnitude(kind, metric, spec.magnitude, sign)
        return ActiveAnomaly(kind, metric, tick, tick + ticks, magnitude)

    def step(self, tick: int) -> list[ActiveAnomaly]:
        """Advance to ``tick``: drop finished anomalies, return the ones starting now."""
        if self.active:
            self.active = [a for a in self.active if a.end_tick > tick]
        started: list[ActiveAnomaly] = []
        pending = self._pending
        while pending and pending[-1].first_tick <= tick:
            anomaly = pending.pop()
            if anomaly.every_ticks:
                step = anomaly.every_ticks
                again = replace(
                    anomaly, first_tick=anomaly.first_tick + step, end_tick=anomaly.end_tick + step
                )
                # Pending is sorted latest first: insert by the negated start.
                keys = [-a.first_tick for a in pending]
                pending.insert(bisect.bisect_right(keys, -again.first_tick), again)
            if anomaly.end_tick > tick:  # skip windows wholly in the past
                anomaly.first_tick = max(anomaly.first_tick, tick)
                started.append(anomaly)
        if tick >= self._next_random:
            drawn = self._random_anomaly(tick)
            if drawn is not None:
                started.append(drawn)
                self._random_busy_until = drawn.end_tick
            # One random anomaly at a time per device: the next one comes after it.
            self._next_random = self._draw_next(max(tick, self._random_busy_until))
        if started:
            self.active.extend(started)
        return started

    def silent(self) -> bool:
        """Whether a dropout is active (call after :meth:`step`)."""
        return any(a.kind is AnomalyKind.DROPOUT for a in self.active)


def parse_anomaly_spec(text: str) -> ScheduledAnomaly | RandomAnomalies:
    """Parse one ``--anomalies`` item.

    ``KIND@START[+DURATION][:METRIC[:DEVICE]]`` schedules one anomaly (seconds after
    the start), e.g. ``stuck@600+300:temperature:sim-00001``; ``KIND~RATE`` injects
    ``KIND`` at random, ``RATE`` per device per hour, e.g. ``spike~2``; ``all~RATE``
    picks among every kind.
    """
    text = text.strip()
    try:
        if "~" in text:
            kind_text, rate = text.split("~", 1)
            chosen = tuple(AnomalyKind) if kind_text == "all" else (AnomalyKind(kind_text),)
            return RandomAnomalies(kinds=chosen, rate_per_hour=float(rate))
        head, *rest = text.split(":")
        kind_text, when = head.split("@", 1)
        start, _, duration = when.partition("+")
        return ScheduledAnomaly(
            kind=AnomalyKind(kind_text),
            at_s=float(start),
            duration_s=float(duration) if duration else None,
            metric=rest[0] if rest else ALL_METRICS,
            device=rest[1] if len(rest) > 1 else "*",
        )
    except ValueError as exc:
        kinds = ", ".join(k.value for k in AnomalyKind)
        raise ValueError(
            f"cannot read anomaly {text!r} ({exc}); expected KIND@START[+DURATION]"
            f"[:METRIC[:DEVICE]] or KIND~RATE_PER_HOUR, with KIND one of {kinds} (or all~RATE)"
        ) from None
