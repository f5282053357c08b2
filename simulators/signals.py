"""Signal models: what a simulated sensor would measure, as a function of event time.

Every model has a frozen parameter model (a pydantic model, so that scenario files are
validated with a clear field name and reason) and a stateful sampler built from it by
:func:`build_signal`. A sampler is called with strictly increasing event times in Unix
seconds (UTC) and returns one float; it owns a private ``random.Random``, so the same
seed and the same sample times give the same values.

Models and what their parameters promise (with the defaults):

==============  ======================================================================
``temperature`` ``mean`` (21 degC) + a per-device offset, uniform in ``±mean_spread``
                (1); a daily cosine of ``daily_amplitude`` (3) peaking at
                ``peak_hour_utc`` (15); Ornstein-Uhlenbeck noise of stationary standard
                deviation ``noise_sigma`` (0.3) and correlation time ``noise_tau_s``
                (300 s); plus a linear ``drift_per_day`` (0.1 degC/day) from the start.
``humidity``    ``mean`` (45 %) + ``coupling`` (-2 %/degC) times the deviation of the
                device's temperature from its own mean (so the two are anti-correlated),
                plus OU noise (``noise_sigma`` 1 %, ``noise_tau_s`` 600 s); clamped to
                [0, 100].
``pressure``    a random walk of ``step_sigma`` (0.02 hPa per sqrt(s)) with a weak pull
                towards ``mean`` (1013.25 hPa, half-life ``reversion_half_life_s``
                6 h), reflected into [``lower``, ``upper``] (980, 1045): never outside.
``vibration``   RMS velocity (mm/s): a two-state machine, on (level ``on_level`` 4.5)
                and off (``off_level`` 0.2), exponential dwell times with means
                ``mean_on_s`` (1800 s) and ``mean_off_s`` (600 s); multiplicative
                noise ``noise_rel`` (0.08); never negative.
``power``       load profile (W): ``base`` (150) + (``peak`` (2000) - ``base``) times a
                ``profile`` fraction of the local hour (``utc_offset_h`` 0): ``office``
                (weekdays 08-18), ``factory`` (weekdays 06-22, nights 30 %, weekends
                20 %), ``residential`` (morning and evening peaks) or ``constant``;
                plus relative OU noise ``noise_rel`` (0.05); never negative.
``current``     the same load profiles in A (``base`` 0.5, ``peak`` 9).
``battery``     Li-ion open-circuit voltage (V) along a discharge curve from ``full_v``
                (4.2) to ``empty_v`` (3.0) over ``life_days`` (30); the starting charge
                is uniform in [``start_soc_min``, ``start_soc_max``] (0.6, 1.0); an empty
                battery is recharged to full when ``recharge`` (true); Gaussian noise
                ``noise_sigma`` (0.005 V).
``door``        contact: 1.0 open, 0.0 closed. Openings arrive as a Poisson process of
                ``opens_per_hour`` (2) and stay open an exponential time of mean
                ``mean_open_s`` (60 s). The state is sampled at each reading, so an
                opening shorter than the interval may be missed, as with a real
                polled contact.
==============  ======================================================================

``scale`` (a typical size of variation) and ``valid_range`` (what the sensor can
physically report) of each model are used by anomaly injection for default magnitudes
and for out-of-range values.
"""

from __future__ import annotations

import bisect
import math
import random

from simulators.signal_params import (
    MODEL_NAMES,
    BatteryParams,
    CurrentParams,
    DoorParams,
    HumidityParams,
    ModelParams,
    PowerParams,
    PressureParams,
    SignalParams,
    TemperatureParams,
    VibrationParams,
    default_params,
)

__all__ = [
    "MODEL_NAMES",
    "BatteryParams",
    "CurrentParams",
    "DoorParams",
    "HumidityParams",
    "PowerParams",
    "PressureParams",
    "Signal",
    "SignalParams",
    "TemperatureParams",
    "VibrationParams",
    "build_signal",
    "default_params",
    "load_fraction",
]

_DAY = 86_400.0


class Signal:
    """A stateful sampler: ``sample(t)`` for strictly increasing Unix times ``t``.

    Sampling the same ``t`` twice returns the cached value, so that a dependent signal
    (humidity reads temperature) may ask for it in any order.
    """

    __slots__ = ("_last_t", "_last_v", "params", "rng")

    def __init__(self, params: ModelParams, rng: random.Random) -> None:
        self.params = params
        self.rng = rng
        self._last_t: float | None = None
        self._last_v = 0.0

    def sample(self, t: float) -> float:
        """Return the value at Unix time ``t`` (UTC seconds)."""
        if t == self._last_t:
            return self._last_v
        dt = 0.0 if self._last_t is None else t - self._last_t
        value = self._next(t, dt)
        self._last_t = t
        self._last_v = value
        return value

    def _next(self, t: float, dt: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError


class _OU:
    """Ornstein-Uhlenbeck noise: stationary std ``sigma``, correlation time ``tau``."""

    __slots__ = ("_dt", "_k", "_s", "sigma", "tau", "x")

    def __init__(self, sigma: float, tau: float, rng: random.Random) -> None:
        self.sigma = sigma
        self.tau = tau
        self.x = rng.gauss(0.0, sigma)  # start in the stationary distribution
        self._dt = -1.0
        self._k = 0.0
        self._s = 0.0

    def step(self, dt: float, rng: random.Random) -> float:
        if dt <= 0.0:
            return self.x
        if dt != self._dt:  # the interval is nearly always constant: cache the factors
            self._dt = dt
            self._k = math.exp(-dt / self.tau)
            self._s = self.sigma * math.sqrt(1.0 - self._k * self._k)
        self.x = self.x * self._k + self._s * rng.gauss(0.0, 1.0)
        return self.x


class _Temperature(Signal):
    __slots__ = ("_noise", "_offset", "_t0", "_w", "deviation")
    params: TemperatureParams

    def __init__(self, params: TemperatureParams, rng: random.Random) -> None:
        super().__init__(params, rng)
        self._offset = rng.uniform(-params.mean_spread, params.mean_spread)
        self._noise = _OU(params.noise_sigma, params.noise_tau_s, rng)
        self._t0: float | None = None
        self._w = 2.0 * math.pi / _DAY
        self.deviation = 0.0
        """This sample minus the device's own mean (used by humidity)."""

    def _next(self, t: float, dt: float) -> float:
        p = self.params
        if self._t0 is None:
            self._t0 = t
        cycle = p.daily_amplitude * math.cos(self._w * (t - p.peak_hour_utc * 3600.0))
        drift = p.drift_per_day * (t - self._t0) / _DAY
        self.deviation = cycle + self._noise.step(dt, self.rng)
        return p.mean + self._offset + drift + self.deviation


class _Humidity(Signal):
    __slots__ = ("_noise", "_temperature")
    params: HumidityParams

    def __init__(
        self, params: HumidityParams, rng: random.Random, temperature: _Temperature
    ) -> None:
        super().__init__(params, rng)
        self._temperature = temperature
        self._noise = _OU(params.noise_sigma, params.noise_tau_s, rng)

    def _next(self, t: float, dt: float) -> float:
        p = self.params
        self._temperature.sample(t)
        value = p.mean + p.coupling * self._temperature.deviation + self._noise.step(dt, self.rng)
        return min(100.0, max(0.0, value))


class _Pressure(Signal):
    __slots__ = ("_p",)
    params: PressureParams

    def __init__(self, params: PressureParams, rng: random.Random) -> None:
        super().__init__(params, rng)
        span = params.upper - params.lower
        self._p = min(params.upper, max(params.lower, rng.gauss(params.mean, span / 20)))

    def _next(self, t: float, dt: float) -> float:
        p = self.params
        if dt > 0:
            pull = 1.0 - math.exp(-math.log(2) * dt / p.reversion_half_life_s)
            x = (
                self._p
                + (p.mean - self._p) * pull
                + p.step_sigma * math.sqrt(dt) * self.rng.gauss(0.0, 1.0)
            )
            # Reflect at the walls (twice covers any step smaller than the span).
            for _ in range(2):
                if x > p.upper:
                    x = 2 * p.upper - x
                if x < p.lower:
                    x = 2 * p.lower - x
            self._p = min(p.upper, max(p.lower, x))
        return self._p


class _Vibration(Signal):
    __slots__ = ("_on", "_switch_at")
    params: VibrationParams

    def __init__(self, params: VibrationParams, rng: random.Random) -> None:
        super().__init__(params, rng)
        share_on = params.mean_on_s / (params.mean_on_s + params.mean_off_s)
        self._on = rng.random() < share_on
        self._switch_at: float | None = None

    def _next(self, t: float, dt: float) -> float:
        p = self.params
        if self._switch_at is None:
            self._switch_at = t + self.rng.expovariate(
                1.0 / (p.mean_on_s if self._on else p.mean_off_s)
            )
        while t >= self._switch_at:
            self._on = not self._on
            mean = p.mean_on_s if self._on else p.mean_off_s
            self._switch_at += self.rng.expovariate(1.0 / mean)
        level = p.on_level if self._on else p.off_level
        return max(0.0, level * (1.0 + p.noise_rel * self.rng.gauss(0.0, 1.0)))

    @property
    def running(self) -> bool:
        """Whether the machine is on at the last sample."""
        return self._on


def _ramp(hour: float, up: float, down: float, width: float = 1.0) -> float:
    """1 between ``up`` and ``down`` (hours), linear ramps of ``width`` h, else 0."""
    if hour < up - width or hour >= down + width:
        return 0.0
    if hour < up:
        return (hour - (up - width)) / width
    if hour >= down:
        return 1.0 - (hour - down) / width
    return 1.0


def load_fraction(profile: str, t: float, utc_offset_h: float = 0.0) -> float:
    """Return the profile's share (0..1) of the peak load at Unix time ``t``."""
    local = t + utc_offset_h * 3600.0
    hour = (local % _DAY) / 3600.0
    weekday = int(local // _DAY + 3) % 7  # 1970-01-01 was a Thursday (3, Monday = 0)
    weekend = weekday >= 5
    if profile == "constant":
        return 1.0
    if profile == "office":
        return 0.05 if weekend else 0.05 + 0.95 * _ramp(hour, 8.0, 18.0)
    if profile == "factory":
        if weekend:
            return 0.2
        return 0.3 + 0.7 * _ramp(hour, 6.0, 22.0, 0.5)
    if profile == "residential":
        return 0.15 + 0.35 * _ramp(hour, 7.0, 9.0) + 0.85 * _ramp(hour, 18.0, 22.0)
    raise ValueError(f"unknown load profile {profile!r}")


class _Load(Signal):
    __slots__ = ("_noise",)
    params: PowerParams

    def __init__(self, params: PowerParams, rng: random.Random) -> None:
        super().__init__(params, rng)
        self._noise = _OU(params.noise_rel, params.noise_tau_s, rng)

    def _next(self, t: float, dt: float) -> float:
        p = self.params
        mean = p.base + (p.peak - p.base) * load_fraction(p.profile, t, p.utc_offset_h)
        return max(0.0, mean * (1.0 + self._noise.step(dt, self.rng)))


# Li-ion open-circuit voltage against state of charge, normalised to 0..1 of the
# full-empty span: steep at both ends, a long plateau in between.
_SOC = (0.0, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95, 1.0)
_OCV = (0.0, 0.375, 0.5, 0.567, 0.625, 0.708, 0.833, 0.933, 1.0)


def _ocv_fraction(soc: float) -> float:
    i = min(max(bisect.bisect_right(_SOC, soc), 1), len(_SOC) - 1)
    s0, s1, v0, v1 = _SOC[i - 1], _SOC[i], _OCV[i - 1], _OCV[i]
    return v0 + (v1 - v0) * (soc - s0) / (s1 - s0)


class _Battery(Signal):
    __slots__ = ("_soc",)
    params: BatteryParams

    def __init__(self, params: BatteryParams, rng: random.Random) -> None:
        super().__init__(params, rng)
        self._soc = rng.uniform(params.start_soc_min, params.start_soc_max)

    def _next(self, t: float, dt: float) -> float:
        p = self.params
        self._soc -= dt / (p.life_days * _DAY)
        if self._soc <= 0.0:
            self._soc = 1.0 if p.recharge else 0.0
        frac = _ocv_fraction(self._soc)
        return p.empty_v + (p.full_v - p.empty_v) * frac + self.rng.gauss(0.0, p.noise_sigma)

    @property
    def state_of_charge(self) -> float:
        """The state of charge (0..1) at the last sample."""
        return self._soc


class _Door(Signal):
    __slots__ = ("_close_at", "_open_at")
    params: DoorParams

    def __init__(self, params: DoorParams, rng: random.Random) -> None:
        super().__init__(params, rng)
        self._open_at: float | None = None
        self._close_at = -math.inf

    def _next(self, t: float, dt: float) -> float:
        p = self.params
        if p.opens_per_hour <= 0:
            return 0.0
        rate = p.opens_per_hour / 3600.0
        if self._open_at is None:
            self._open_at = t + self.rng.expovariate(rate)
        # Play the openings that happened since the last sample, in order.
        while self._open_at <= t:
            self._close_at = self._open_at + self.rng.expovariate(1.0 / p.mean_open_s)
            self._open_at = self._close_at + self.rng.expovariate(rate)
        return 1.0 if t < self._close_at else 0.0


def build_signal(
    params: ModelParams,
    rng: random.Random,
    *,
    temperature: Signal | None = None,
) -> Signal:
    """Build the sampler for ``params``.

    ``temperature`` is the device's temperature sampler, which humidity follows; a
    humidity without one gets a private temperature with default parameters.
    """
    if isinstance(params, HumidityParams):
        if not isinstance(temperature, _Temperature):
            temperature = _Temperature(TemperatureParams(), random.Random(rng.random()))
        return _Humidity(params, rng, temperature)
    # By exact type, as a table would: a subclass of a model is not sampled as that model.
    if type(params) is TemperatureParams:
        return _Temperature(params, rng)
    if type(params) is PressureParams:
        return _Pressure(params, rng)
    if type(params) is VibrationParams:
        return _Vibration(params, rng)
    if type(params) is PowerParams or type(params) is CurrentParams:
        return _Load(params, rng)
    if type(params) is BatteryParams:
        return _Battery(params, rng)
    if type(params) is DoorParams:
        return _Door(params, rng)
    raise TypeError(f"no sampler for {type(params).__name__}")
