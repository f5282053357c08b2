import math
import warnings

import numpy as np
import pytest

from dataflows.detectors.anomaly import AnomalyDetector
from dataflows.detectors.anomaly_bank import AnomalyBank
from dataflows.detectors.banks import make_bank
from dataflows.rules import AnomalyRule

S = 1_000_000
T0 = 1_780_000_000 * S


def series(kind, n, rng):
    t = np.arange(n)
    if kind == "noise":
        v = 50 + rng.normal(0, 1, n)
    elif kind == "walk":
        v = np.cumsum(rng.normal(0, 1, n))
    elif kind == "shift":
        v = 10 + rng.normal(0, 0.5, n) + np.where(t > n // 2, 8.0, 0.0)
    elif kind == "spikes":
        v = rng.gamma(1.5, 2.0, n) + np.where(rng.random(n) < 0.01, 80.0, 0.0)
    elif kind == "quantised":
        v = np.round(20 + rng.normal(0, 0.3, n), 1)
    elif kind == "stuck":
        v = 5 + rng.normal(0, 1, n)
        v[n // 2 : n // 2 + 80] = v[n // 2]
    elif kind == "counts":  # zero runs of varying length, bursts: the stuck memory
        v = rng.poisson(3, n).astype(float)
        for start in range(0, n - 40, 150):
            v[start : start + int(rng.integers(5, 40))] = 0.0
        v[rng.choice(n, 10, replace=False)] += 60.0
    elif kind == "slide":  # a slow onset to a level that stays (hold, its expiry)
        v = 20 + rng.normal(0, 1, n)
        v[n // 3 : n // 3 + 60] += np.linspace(0, 6, 60)
        v[n // 3 + 60 :] += 6.0
    elif kind == "ramp":  # a new maximum at every reading, and one real extreme
        v = np.linspace(0, 40, n) + rng.normal(0, 1, n)
        v[n - 50] += 9.0
    elif kind == "daily":
        v = 10 + 5 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 0.2, n)
    elif kind == "extreme":
        v = rng.normal(0, 1, n)
        picks = rng.choice(n, 30, replace=False)
        v[picks] = rng.choice([1e308, -1e308, math.inf, -math.inf, math.nan, 1e-300], 30)
    else:
        v = np.full(n, 3.0)
    return v


KINDS = [
    "noise",
    "walk",
    "shift",
    "spikes",
    "quantised",
    "stuck",
    "counts",
    "slide",
    "ramp",
    "daily",
    "extreme",
    "flat",
]


def signal_tuple(signal):
    if signal is None:
        return None
    return (signal.active, signal.value, signal.threshold, signal.severity, signal.message)


def same(a, b):
    if a is None or b is None:
        return a is b
    return all(
        (x == y)
        or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize(
    "params",
    [{}, {"season_buckets": 0, "hold_us": 3600 * S}, {"warmup": 5, "refractory": 0}],
)
def test_bank_says_what_the_scalar_says_entry_by_entry(params):
    rng = np.random.default_rng(5)
    n = 2100  # past the first block of the recent range (2,000 readings)
    slots = len(KINDS) * 2
    data = [series(KINDS[k % len(KINDS)], n, rng) for k in range(slots)]
    # Irregular times per slot (5 minutes give or take), so buckets and gaps differ.
    times = [T0 + np.cumsum(rng.integers(200, 400, n)) * S for _ in range(slots)]
    scalars = [AnomalyDetector(**params) for _ in range(slots)]
    bank = AnomalyBank(**params)
    bank.grow(slots)
    raised = 0
    codes: set[int] = set()
    for r in range(n):
        order = rng.permutation(slots)
        ids = order.astype(np.int64)
        t = np.array([times[k][r] for k in order], np.int64)
        v = np.array([data[k][r] for k in order], np.float64)
        signals = bank.update(ids, t, v)
        for i, k in enumerate(order.tolist()):
            expected = signal_tuple(scalars[k].update(int(t[i]), float(v[i])))
            got = signal_tuple(signals.signal(i, bank.describe(signals, i)))
            assert same(got, expected), (KINDS[k % len(KINDS)], r, got, expected)
            raised += bool(expected and expected[0])
            if expected and expected[0]:
                codes.add(int(signals.detail["code"][i]))
        if r == n // 3:  # snapshot and restore mid-way: nothing changes
            state = bank.snapshot()
            bank = AnomalyBank(**params)
            bank.restore(state)
            for k in range(slots):
                copy = AnomalyDetector(**params)
                copy.restore(scalars[k].snapshot())
                scalars[k] = copy
    assert raised > 0
    assert {1, 3, 4, 5} <= codes  # prediction error, level shift, stuck, new extreme


def test_extreme_values_never_make_nan_decisions():
    bank = AnomalyBank(warmup=3)
    bank.grow(2)
    values = [1.0, 2.0, 1e308, -1e308, math.inf, -math.inf, 1.5, 1e308, 2.0] * 20
    for r, value in enumerate(values):
        signals = bank.update(
            np.array([0, 1], np.int64),
            np.array([T0 + r * S] * 2, np.int64),
            np.array([value, -value]),
        )
        if signals.valid.any():
            assert np.isfinite(signals.threshold[signals.valid]).all()
    for name, array in bank.snapshot().items():
        if name not in ("size", "res", "buckets"):
            assert np.isfinite(np.asarray(array, np.float64)).all(), name


def test_a_snapshot_of_the_previous_version_restores_like_the_scalar():
    rng = np.random.default_rng(2)
    values = 50 + rng.normal(0, 1, 400)
    scalar = AnomalyDetector()
    bank = AnomalyBank()
    bank.grow(1)
    for r in range(300):
        scalar.update(T0 + r * S, float(values[r]))
        bank.update(np.array([0]), np.array([T0 + r * S]), values[r : r + 1])
    old_scalar = {
        k: v
        for k, v in scalar.snapshot().items()
        if k not in ("hi", "lo", "hi_old", "lo_old", "runmax", "marked", "persist", "raised")
    }
    old_bank = {
        k: v
        for k, v in bank.snapshot().items()
        if k not in ("hi", "lo", "hi_old", "lo_old", "runmax", "marked", "persist", "raised")
    }
    scalar = AnomalyDetector()
    scalar.restore(old_scalar)
    bank = AnomalyBank()
    bank.restore(old_bank)
    for r in range(300, 400):
        expected = signal_tuple(scalar.update(T0 + r * S, float(values[r])))
        signals = bank.update(np.array([0]), np.array([T0 + r * S]), values[r : r + 1])
        assert same(signal_tuple(signals.signal(0, bank.describe(signals, 0))), expected)
        assert not expected[0]  # no new extreme out of a missing range


def test_grow_and_reset_start_slots_fresh():
    bank = AnomalyBank(warmup=2)
    bank.grow(1)
    for r in range(5):
        bank.update(np.array([0]), np.array([T0 + r * S]), np.array([float(r)]))
    bank.grow(3)
    assert bank.size == 3
    out = bank.update(np.array([0, 2]), np.array([T0 + 9 * S] * 2), np.array([1.0, 1.0]))
    assert out.valid.tolist() == [True, False]
    bank.reset(np.array([0]))
    out = bank.update(np.array([0]), np.array([T0 + 10 * S]), np.array([1.0]))
    assert out.valid.tolist() == [False]


def test_make_bank_gives_the_anomaly_bank():
    bank = make_bank(AnomalyRule(id="a", kind="anomaly", warmup=7))
    assert isinstance(bank, AnomalyBank)
    assert bank.spec.warmup == 7


def test_a_snapshot_with_float64_buckets_restores_like_the_scalar() -> None:
    """Buckets saved as float64 (before they were float32) load capped and rounded."""
    huge, fine = 1e300, 0.1
    scalar = AnomalyDetector()
    state = scalar.snapshot()
    state["buckets"] = [huge, fine] + [None] * (len(state["buckets"]) - 2)
    scalar.restore(state)
    bank = AnomalyBank()
    bank.grow(1)
    saved = bank.snapshot()
    saved["buckets"] = np.full((1, 24), np.nan)
    saved["buckets"][0, :2] = (huge, fine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning from the cast
        bank.restore(saved)
    assert list(bank.snapshot()["buckets"][0, :2]) == list(scalar._buckets[:2])
    assert math.isfinite(scalar._buckets[0])
