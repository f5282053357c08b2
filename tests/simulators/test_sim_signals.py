"""Statistical tests of the signal models against their documented parameters."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from datetime import UTC, datetime

import pytest

from simulators.signals import (
    MODEL_NAMES,
    BatteryParams,
    DoorParams,
    HumidityParams,
    PowerParams,
    PressureParams,
    TemperatureParams,
    VibrationParams,
    build_signal,
    default_params,
    load_fraction,
)

# A Monday at midnight UTC, so that profiles see a whole working week.
T0 = datetime(2026, 1, 5, tzinfo=UTC).timestamp()
DAY = 86_400


def series(params, *, seed=1, step=60.0, span=DAY, temperature=None):
    sig = build_signal(params, random.Random(seed), temperature=temperature)
    times = [T0 + i * step for i in range(int(span / step))]
    return times, [sig.sample(t) for t in times]


def pearson(xs, ys):
    return statistics.correlation(xs, ys)


def test_every_model_has_defaults_and_a_sampler():
    for name in MODEL_NAMES:
        params = default_params(name)
        _times, values = series(params, span=3600)
        assert all(math.isfinite(v) for v in values), name
        lo, hi = params.valid_range
        assert all(lo <= v <= hi for v in values), name
    with pytest.raises(ValueError, match="unknown signal model"):
        default_params("nope")


def test_temperature_mean_range_and_daily_cycle():
    p = TemperatureParams(
        mean=20, mean_spread=0, daily_amplitude=3, noise_sigma=0.3, drift_per_day=0
    )
    times, values = series(p, step=60, span=10 * DAY)
    assert statistics.fmean(values) == pytest.approx(20, abs=0.3)
    # cycle (±3) plus noise (0.3 sigma): well inside ±(3 + 5 sigma)
    assert min(values) > 20 - 3 - 1.5
    assert max(values) < 20 + 3 + 1.5
    # the warmest hour is the documented peak hour (15 UTC), the coolest 12 h later
    by_hour = {h: [] for h in range(24)}
    for t, v in zip(times, values, strict=True):
        by_hour[int((t % DAY) // 3600)].append(v)
    means = {h: statistics.fmean(vs) for h, vs in by_hour.items()}
    assert max(means, key=means.get) in (14, 15)
    assert min(means, key=means.get) in (2, 3)


def test_temperature_noise_is_autocorrelated():
    p = TemperatureParams(
        daily_amplitude=0, mean_spread=0, noise_sigma=1.0, noise_tau_s=600, drift_per_day=0
    )
    _times, values = series(p, step=10, span=2 * DAY)
    lag1 = pearson(values[:-1], values[1:])
    assert lag1 == pytest.approx(math.exp(-10 / 600), abs=0.03)
    assert statistics.pstdev(values) == pytest.approx(1.0, rel=0.2)


def test_temperature_drift_is_visible_over_a_simulated_day():
    p = TemperatureParams(
        mean=20, mean_spread=0, daily_amplitude=3, noise_sigma=0.3, drift_per_day=1.5
    )
    times, values = series(p, step=60, span=2 * DAY)
    half = len(values) // 2
    day1, day2 = statistics.fmean(values[:half]), statistics.fmean(values[half:])
    assert day2 - day1 == pytest.approx(1.5, abs=0.3)
    # and within the first day alone: the residual after removing the cycle trends up
    first = [
        (t, v - 3 * math.cos(2 * math.pi * (t - 15 * 3600) / DAY))
        for t, v in zip(times[:half], values[:half], strict=True)
    ]
    slope = statistics.linear_regression([t for t, _ in first], [r for _, r in first]).slope
    assert slope * DAY == pytest.approx(1.5, abs=0.4)


def test_temperature_devices_differ_by_their_offset():
    p = TemperatureParams(
        mean=20, mean_spread=2, noise_sigma=0.1, daily_amplitude=0, drift_per_day=0
    )
    means = [statistics.fmean(series(p, seed=s, span=3600)[1]) for s in range(30)]
    assert all(18 - 0.5 < m < 22 + 0.5 for m in means)
    assert statistics.pstdev(means) > 0.5


def test_humidity_is_anti_correlated_with_the_devices_temperature():
    rng = random.Random(3)
    temp = build_signal(TemperatureParams(), rng)
    hum = build_signal(HumidityParams(mean=45, coupling=-2), random.Random(4), temperature=temp)
    times = [T0 + i * 60 for i in range(2 * 1440)]
    temps, hums = [], []
    for t in times:
        temps.append(temp.sample(t))
        hums.append(hum.sample(t))
    assert pearson(temps, hums) < -0.7
    assert statistics.fmean(hums) == pytest.approx(45, abs=1.5)
    assert all(0 <= h <= 100 for h in hums)


def test_humidity_alone_still_follows_a_private_temperature():
    _times, hums = series(HumidityParams(), span=DAY)
    assert 30 < statistics.fmean(hums) < 60
    assert max(hums) - min(hums) > 6  # the daily cycle shows through the coupling


def test_pressure_is_a_bounded_random_walk():
    p = PressureParams(mean=1000, lower=990, upper=1010, step_sigma=0.5, reversion_half_life_s=1e9)
    _times, values = series(p, step=60, span=20 * DAY)
    assert min(values) >= 990
    assert max(values) <= 1010
    steps = [b - a for a, b in itertools.pairwise(values)]
    assert statistics.pstdev(steps) == pytest.approx(0.5 * math.sqrt(60), rel=0.15)
    assert max(values) - min(values) > 10  # it does wander across the band


def test_vibration_has_two_regimes_with_the_documented_levels():
    p = VibrationParams(on_level=5, off_level=0.2, mean_on_s=600, mean_off_s=300, noise_rel=0.05)
    _times, values = series(p, step=10, span=5 * DAY)
    on = [v for v in values if v > 2.5]
    off = [v for v in values if v <= 2.5]
    assert statistics.fmean(on) == pytest.approx(5, rel=0.03)
    assert statistics.fmean(off) == pytest.approx(0.2, rel=0.05)
    assert len(on) / len(values) == pytest.approx(600 / 900, abs=0.06)
    assert min(values) >= 0


@pytest.mark.parametrize("profile", ["office", "factory", "residential", "constant"])
def test_power_follows_its_load_profile(profile):
    p = PowerParams(profile=profile, base=100, peak=1100, noise_rel=0.02)
    times, values = series(p, step=300, span=7 * DAY)
    for t, v in zip(times, values, strict=True):
        expected = 100 + 1000 * load_fraction(profile, t)
        assert v == pytest.approx(expected, rel=0.12)
    if profile == "office":
        noon = [
            v
            for t, v in zip(times, values, strict=True)
            if (t - T0) // DAY < 5 and 12 <= (t % DAY) / 3600 < 13
        ]
        night = [v for t, v in zip(times, values, strict=True) if 2 <= (t % DAY) / 3600 < 3]
        assert statistics.fmean(noon) == pytest.approx(1100, rel=0.05)
        assert statistics.fmean(night) == pytest.approx(150, rel=0.1)


def test_current_uses_amperes():
    _times, values = series(default_params("current"), span=DAY)
    assert min(values) >= 0
    assert max(values) < 12


def test_battery_discharges_along_its_curve_and_recharges():
    p = BatteryParams(life_days=2, start_soc_min=1.0, start_soc_max=1.0, noise_sigma=0.0)
    _times, values = series(p, step=600, span=2 * DAY - 600)
    assert values[0] == pytest.approx(4.2, abs=0.01)
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(values))
    assert values[-1] < 3.3
    # the plateau: the middle half of the life spans a small part of the voltage range
    quarter = len(values) // 4
    assert values[quarter] - values[3 * quarter] < 0.35
    _t, more = series(p, step=600, span=3 * DAY)
    assert max(more[len(values) :]) > 4.0  # recharged after running empty


def test_door_is_binary_with_the_documented_rate():
    p = DoorParams(opens_per_hour=6, mean_open_s=60)
    _times, values = series(p, step=5, span=10 * DAY)
    assert set(values) <= {0.0, 1.0}
    openings = sum(1 for a, b in itertools.pairwise(values) if a == 0 and b == 1)
    assert openings == pytest.approx(6 * 24 * 10, rel=0.15)
    open_share = statistics.fmean(values)
    assert open_share == pytest.approx(6 * 60 / (3600 + 6 * 60), rel=0.2)


def test_same_seed_same_values_and_different_seed_different():
    for name in MODEL_NAMES:
        params = default_params(name)
        a = series(params, seed=11, span=6 * 3600)[1]
        b = series(params, seed=11, span=6 * 3600)[1]
        c = series(params, seed=12, span=6 * 3600)[1]
        assert a == b, name
        if name != "door":  # a door may well stay shut for six hours under two seeds
            assert a != c, name


def test_parameters_are_validated():
    with pytest.raises(ValueError, match="lower < mean < upper"):
        PressureParams(mean=2000)
    with pytest.raises(ValueError, match="empty_v < full_v"):
        BatteryParams(empty_v=5)
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        VibrationParams(on_level=-1)
