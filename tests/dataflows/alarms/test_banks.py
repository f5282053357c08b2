"""Detector banks against the scalar detectors they vectorise, entry by entry."""

import math
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from contract.alarms import Severity
from dataflows.detectors import (
    AdaptiveDetector,
    RangeDetector,
    RateDetector,
    Signal,
    ThresholdDetector,
    adaptive_bank,
)
from dataflows.detectors.adaptive import _STUCK_ODDS
from dataflows.detectors.banks import (
    AdaptiveBank,
    RangeBank,
    ScalarBank,
    ThresholdBank,
    make_bank,
)
from dataflows.rules import parse_rules

S = 1_000_000
EPOCH_2026 = 1_780_000_000 * S
SEASON = 60 * S  # a one-minute "day" keeps season tests short
FAST = settings(max_examples=25, deadline=None, derandomize=True)
# Examples drawn from a seed: shrinking a seed teaches nothing and takes minutes.
SEEDED = settings(FAST, phases=[Phase.explicit, Phase.reuse, Phase.generate])

Series = tuple[np.ndarray, np.ndarray]  # times (int64 us), values (float64)


# -- the harness ---------------------------------------------------------------------


def _same_float(a: float | None, b: float | None) -> bool:
    """Bit-for-bit equality, NaN and None meaning "none" alike (BankSignals' NaN)."""
    a = None if a is None or a != a else a
    b = None if b is None or b != b else b
    if a is None or b is None:
        return a is b
    return math.copysign(1.0, a) == math.copysign(1.0, b) and a == b


def _assert_same(expected: Signal | None, got: Signal | None, where: str) -> None:
    if expected is None or got is None:
        assert expected is got, where
        return
    assert got.active == expected.active, where
    assert _same_float(got.value, expected.value), where
    assert _same_float(got.threshold, expected.threshold), where
    assert got.severity == expected.severity, where
    assert got.message == expected.message, where


def _run(
    bank: Any,
    make: Callable[[], Any],
    series: list[Series],
    rng: np.random.Generator,
    *,
    scalars: list[Any] | None = None,
    pos: list[int] | None = None,
    stop: int | None = None,
) -> dict[str, int]:
    """Feed every slot's series in rounds (random membership and order); compare all.

    ``pos`` (updated in place) is where each slot's series resumes; ``stop`` where it
    stops. Returns counts of what was seen (so a test can show it was not vacuous).
    """
    bank.grow(len(series))
    scalars = scalars if scalars is not None else [make() for _ in series]
    pos = pos if pos is not None else [0] * len(series)
    ends = [len(t) if stop is None else min(stop, len(t)) for t, _ in series]
    seen = {"valid": 0, "active": 0, "stuck": 0, "major": 0, "rounds": 0}
    while True:
        ready = [k for k in range(len(series)) if pos[k] < ends[k]]
        if not ready:
            if isinstance(bank, AdaptiveBank):
                _assert_same_state(bank, scalars)
            return seen
        # The engine feeds a round of the slots that have a next reading; some slots
        # may sit a round out (no reading in this batch).
        chosen = [k for k in ready if rng.random() < 0.85] or ready[:1]
        chosen = rng.permutation(chosen).tolist()
        slots = np.array(chosen, np.int64)
        t = np.array([series[k][0][pos[k]] for k in chosen], np.int64)
        v = np.array([series[k][1][pos[k]] for k in chosen], np.float64)
        signals = bank.update(slots, t, v)
        assert len(signals) == len(chosen)
        for i, k in enumerate(chosen):
            expected = scalars[k].update(int(t[i]), float(v[i]))
            got = signals.signal(i, bank.describe(signals, i))
            _assert_same(expected, got, f"slot {k}, reading {pos[k]}: {v[i]!r} at {t[i]}")
            if got is not None:
                seen["valid"] += 1
                seen["active"] += got.active
                seen["stuck"] += got.message.startswith("stuck")
                seen["major"] += got.severity is Severity.MAJOR
            pos[k] += 1
        seen["rounds"] += 1
        if isinstance(bank, AdaptiveBank) and seen["rounds"] % 50 == 0:
            _assert_same_state(bank, scalars)


def _assert_same_state(bank: AdaptiveBank, scalars: list[AdaptiveDetector]) -> None:
    """Every slot's learnt state equals its scalar twin's, bit for bit."""
    state = bank.snapshot()
    for k, detector in enumerate(scalars[: bank.size]):
        doc = detector.snapshot()
        if doc["first"] is None:
            assert not state["seen"][k]
            continue
        expected = {
            "n": doc["n"],
            "run": doc["run"],
            "held": doc["held"],
            "active": doc["active"],
            "first_t": doc["first"],
            "last_t": doc["last_t"] or 0,  # the scalar's none and 0 mean the same
        }
        for name, value in expected.items():
            assert state[name][k] == value, (k, name)
        floats = {
            "repeat": doc["repeat"],
            "level": doc["level"],
            "scale": doc["scale"],
            "sscale": math.inf if doc["sscale"] is None else doc["sscale"],
            "perr": doc["perr"],
            "serr": doc["serr"],
            "res": math.inf if doc["res"] is None else doc["res"],
            "last": doc["last"],
        }
        for name, value in floats.items():
            assert _same_float(float(state[name][k]), value), (k, name, state[name][k], value)
        for b, value in enumerate(doc["season"]):
            got = float(state["season"][k, b])
            if value is None:
                assert math.isnan(got), (k, b)
                assert not state["season_nan"][k, b], (k, b)
            else:
                assert _same_float(got, value), (k, b, got, value)
                assert bool(state["season_nan"][k, b]) == math.isnan(value), (k, b)


def _times(rng: np.random.Generator, n: int, *, at_zero: bool = False) -> np.ndarray:
    """Increasing times 1-3 s apart, now and then a gap of over a season.

    ``at_zero``: negative times up to a reading at exactly 0 (the 46th), since the
    scalar detector takes a last time of 0 for "none".
    """
    steps = rng.integers(1, 4, n) * S
    steps[rng.random(n) < 0.01] = 3 * SEASON
    t = np.cumsum(steps)
    if at_zero:
        return (t - t[min(45, n - 1)]).astype(np.int64)
    return (EPOCH_2026 + int(rng.integers(0, SEASON)) + t).astype(np.int64)


def _values(kind: str, rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    n = len(t)
    noise = rng.normal(0.0, 1.0, n)
    if kind == "noise":
        return 20.0 + noise * rng.uniform(0.01, 5)
    if kind == "constant":
        return np.full(n, 32.0)
    if kind == "quantised":
        return np.round(20.0 + noise, 1)
    if kind == "integers":  # repeats often, with runs: near the stuck boundary
        return np.floor(20.0 + noise * 0.4)
    if kind == "step":
        return 20.0 + noise + np.where(np.arange(n) > n // 2, rng.uniform(-50, 50), 0.0)
    if kind == "spikes":
        return 20.0 + noise + (rng.random(n) < 0.03) * rng.normal(0, 200, n)
    if kind == "stuck":
        v = np.round(20.0 + noise, 2)
        for start in rng.integers(0, n, 3):
            v[start : start + int(rng.integers(5, 60))] = v[start]
        return v
    if kind == "seasonal":
        phase = (t % SEASON) * 4 // SEASON
        return np.where(phase < 2, 100.0, 10.0) + noise
    if kind == "walk":
        return np.cumsum(noise)
    if kind == "extreme":
        pool = np.array([1e308, -1e308, 5e-324, -5e-324, 0.0, 1.0, 1e-300, 1.7e308, -3e307])
        return rng.choice(pool, n)
    raise AssertionError(kind)


KINDS = [
    "noise",
    "constant",
    "quantised",
    "integers",
    "step",
    "spikes",
    "stuck",
    "seasonal",
    "walk",
    "extreme",
]


def _series(rng: np.random.Generator, slots: int, length: int) -> list[Series]:
    out = []
    for k in range(slots):
        n = int(rng.integers(length // 2, length + 1))
        t = _times(rng, n, at_zero=k % 7 == 0)  # the scalar treats a last time of 0 as none
        out.append((t, _values(KINDS[k % len(KINDS)], rng, t)))
    return out


# -- AdaptiveBank ----------------------------------------------------------------------


adaptive_params = st.fixed_dictionaries(
    {
        "threshold": st.floats(2.0, 8.0),
        "clear_ratio": st.floats(0.3, 1.0),
        "alpha": st.sampled_from([0.01, 0.02, 0.05, 0.2]),
        "warmup": st.integers(2, 40),
        "huber": st.floats(1.0, 4.0),
        "season_buckets": st.integers(0, 6),
        "stuck_min": st.integers(2, 12),
        "hold": st.none() | st.integers(0, 60),
    }
)


def _adaptive_kwargs(p: dict[str, Any]) -> dict[str, Any]:
    kw = dict(p)
    kw["clear"] = kw["threshold"] * kw.pop("clear_ratio")
    kw["season_us"] = SEASON
    return kw


@SEEDED
@given(adaptive_params, st.integers(0, 2**32 - 1))
def test_adaptive_bank_equals_the_scalar_detector(params, seed):
    kw = _adaptive_kwargs(params)
    rng = np.random.default_rng(seed)
    series = _series(rng, 20, 300)
    _run(AdaptiveBank(**kw), lambda: AdaptiveDetector(**kw), series, rng)


def test_adaptive_bank_equals_the_scalar_on_long_seasonal_series():
    """Several seasons, default parameters but the season: seasons come into use."""
    kw = {"season_us": SEASON, "season_buckets": 4}
    rng = np.random.default_rng(7)
    series = []
    for k in range(30):
        t = EPOCH_2026 + np.arange(1200, dtype=np.int64) * S  # 20 seasons, 1 s apart
        kind = ["seasonal", "stuck", "noise", "spikes", "step", "integers"][k % 6]
        series.append((t, _values(kind, rng, t)))
    scalars = [AdaptiveDetector(**kw) for _ in series]
    seen = _run(AdaptiveBank(**kw), AdaptiveDetector, series, rng, scalars=scalars)
    # Not vacuous: seasons were in use, and stuck, major and plain alarms happened.
    in_use = [d._serr < 0.7 * d._perr and d._last_t - d._first_t >= 2 * SEASON for d in scalars]
    assert sum(in_use) >= 3
    assert seen["stuck"] > 0
    assert seen["major"] > 0
    assert seen["active"] > seen["stuck"]


def test_adaptive_bank_equals_the_scalar_with_default_parameters():
    """The shipped defaults: day seasons of 24 buckets, warmup 60, hold 300."""
    rng = np.random.default_rng(11)
    series = _series(rng, 20, 500)
    _run(AdaptiveBank(), AdaptiveDetector, series, rng)


@FAST
@given(
    st.lists(
        st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=80),
        min_size=1,
        max_size=6,
    ),
    st.integers(2, 5),
)
def test_adaptive_bank_equals_the_scalar_on_any_finite_floats(values, warmup):
    kw = {"warmup": warmup, "season_us": SEASON, "season_buckets": 3, "stuck_min": 2}
    rng = np.random.default_rng(len(values))
    series = [
        (EPOCH_2026 + np.arange(len(v), dtype=np.int64) * 7 * S, np.array(v, np.float64))
        for v in values
    ]
    _run(AdaptiveBank(**kw), lambda: AdaptiveDetector(**kw), series, rng)


def test_extreme_values_neither_raise_nor_warn_nor_break_signals():
    """±1e308, subnormals and huge jumps: overflow to inf and NaN inside, quietly."""
    pool = [1e308, -1e308, 1.7976931348623157e308, 5e-324, -5e-324, 0.0, 1e-300, 42.0]
    rng = np.random.default_rng(3)
    bank = AdaptiveBank(warmup=2, season_us=SEASON, season_buckets=4)
    bank.grow(64)
    slots = np.arange(64, dtype=np.int64)
    for r in range(200):
        values = rng.choice(pool, 64)
        signals = bank.update(slots, EPOCH_2026 + r * S + slots, values)
        assert signals.active.dtype == np.bool_
        assert not np.isnan(signals.value).any()
        for i in np.flatnonzero(signals.valid & signals.active).tolist():
            signal = signals.signal(i, bank.describe(signals, i))
            assert signal is not None
            assert signal.message
    # And the engine's alarms get finite numbers or None out of such signals.
    assert bank.snapshot()["level"].dtype == np.float64


@pytest.mark.parametrize("ulp", [-1, 0, 1])
def test_stuck_boundary_is_decided_as_math_log_decides(monkeypatch, ulp):
    """np.log may err by an ulp (it does on some CPUs): the boundary must not move."""
    monkeypatch.setattr(adaptive_bank, "_log", lambda p: np.nextafter(np.log(p), 0.0))
    # At this repeat rate the scalar's limit is exactly 10 readings: 10 >= 10.0.
    repeat = np.nextafter(0.251188643150958, 1.0 if ulp > 0 else 0.0) if ulp else 0.251188643150958
    assert _STUCK_ODDS / math.log(0.251188643150958) == 10.0
    doc = {
        "n": 60,
        "repeat": repeat,
        "run": 9,
        "held": 0,
        "level": 5.0,
        "scale": 1.0,
        "sscale": None,
        "perr": 0.0,
        "serr": 0.0,
        "last_t": 9 * S,
        "res": 0.5,
        "last": 5.0,
        "active": False,
        "season": [],
        "first": 0,
    }
    scalar = AdaptiveDetector(season_buckets=0)
    scalar.restore(doc)
    bank = AdaptiveBank(season_buckets=0)
    bank.restore(
        {
            "size": 1,
            **{k: np.array([doc[k]]) for k in ("n", "repeat", "run", "held", "level")},
            **{k: np.array([doc[k]]) for k in ("scale", "perr", "serr", "last", "res")},
            "last_t": np.array([9 * S]),
            "seen": np.array([True]),
            "active": np.array([False]),
        }
    )
    expected = scalar.update(10 * S, 5.0)
    signals = bank.update(np.array([0]), np.array([10 * S]), np.array([5.0]))
    _assert_same(expected, signals.signal(0, bank.describe(signals, 0)), "boundary")
    assert expected is not None
    assert expected.active == (ulp <= 0)


def test_adaptive_bank_updates_in_one_batch_or_many():
    """Splitting a round into several update calls changes nothing."""
    rng = np.random.default_rng(5)
    series = _series(rng, 12, 200)
    whole, split = AdaptiveBank(warmup=5), AdaptiveBank(warmup=5)
    whole.grow(12)
    split.grow(12)
    slots = np.arange(12, dtype=np.int64)
    for r in range(100):
        t = np.array([s[0][r] for s in series], np.int64)
        v = np.array([s[1][r] for s in series])
        a = whole.update(slots, t, v)
        b1 = split.update(slots[:5], t[:5], v[:5])
        b2 = split.update(slots[5:], t[5:], v[5:])
        for name in ("valid", "active", "threshold", "severity"):
            joined = np.concatenate([getattr(b1, name), getattr(b2, name)])
            np.testing.assert_array_equal(getattr(a, name), joined)


# -- snapshots, grow and reset ---------------------------------------------------------


def _outputs(bank: Any, series: list[Series], lo: int, hi: int) -> list[Signal | None]:
    """Feed every slot readings lo..hi-1 in full rounds; return every entry's signal."""
    slots = np.arange(len(series), dtype=np.int64)
    out = []
    for r in range(lo, hi):
        t = np.array([s[0][r] for s in series], np.int64)
        v = np.array([s[1][r] for s in series])
        signals = bank.update(slots, t, v)
        out.extend(signals.signal(i, bank.describe(signals, i)) for i in range(len(slots)))
    return out


@pytest.mark.parametrize(
    "make",
    [
        lambda: AdaptiveBank(warmup=20, season_us=SEASON, season_buckets=4),
        lambda: ThresholdBank(levels=[(21.0, Severity.MINOR), (25.0, Severity.MAJOR)], clear=20),
        lambda: RangeBank(low=0.0, high=30.0),
        lambda: ScalarBank(lambda: RateDetector(max_rate=2.0)),
    ],
    ids=["adaptive", "threshold", "range", "scalar"],
)
def test_snapshot_restore_round_trip_is_exact(make):
    rng = np.random.default_rng(9)
    series = []
    for k in range(16):
        t = EPOCH_2026 + np.arange(400, dtype=np.int64) * S
        series.append((t, _values(KINDS[k % len(KINDS)], rng, t)))
    series = [(t, np.nan_to_num(v, posinf=1e300, neginf=-1e300)) for t, v in series]
    straight = make()
    straight.grow(16)
    expected = _outputs(straight, series, 0, 400)

    first = make()
    first.grow(16)
    got = _outputs(first, series, 0, 200)
    # Plain data: it survives a pickle (the recovery store's format) unchanged.
    state = pickle.loads(pickle.dumps(first.snapshot()))
    second = make()
    second.restore(state)
    assert second.size == 16
    got += _outputs(second, series, 200, 400)
    assert sum(s is not None and s.active for s in expected) > 0
    for i, (a, b) in enumerate(zip(expected, got, strict=True)):
        _assert_same(a, b, f"entry {i}")


def test_adaptive_snapshot_is_plain_arrays_and_restores_into_a_larger_bank():
    bank = AdaptiveBank(warmup=3, season_us=SEASON, season_buckets=5)
    bank.grow(3)
    bank.update(np.arange(3), np.full(3, EPOCH_2026), np.array([1.0, 2.0, 3.0]))
    state = bank.snapshot()
    assert state["size"] == 3
    assert state["season"].shape == (3, 5)
    assert np.isnan(state["season"]).all()  # no bucket learnt yet: NaN for unknown
    assert all(isinstance(v, np.ndarray | int) for v in state.values())
    other = AdaptiveBank(warmup=3, season_us=SEASON, season_buckets=5)
    other.grow(10)
    other.restore(state)
    assert other.size == 3
    other.grow(10)
    assert other.size == 10
    # Seasons of another bucket count start fresh, as with the scalar detector.
    fewer = AdaptiveBank(warmup=3, season_us=SEASON, season_buckets=2)
    fewer.restore(state)
    assert fewer.snapshot()["season"].shape == (3, 2)
    np.testing.assert_array_equal(fewer.snapshot()["level"], state["level"])


@pytest.mark.parametrize("bank_kind", ["adaptive", "threshold"])
def test_grow_keeps_slots_and_reset_makes_them_fresh(bank_kind):
    if bank_kind == "adaptive":
        kw = {"warmup": 10, "season_us": SEASON, "season_buckets": 3}

        def make_bank_() -> Any:
            return AdaptiveBank(**kw)

        def make_scalar() -> Any:
            return AdaptiveDetector(**kw)

    else:
        levels = [(22.0, Severity.WARNING), (30.0, Severity.CRITICAL)]

        def make_bank_() -> Any:
            return ThresholdBank(levels=levels, clear=21.0)

        def make_scalar() -> Any:
            return ThresholdDetector(levels=levels, clear=21.0)

    rng = np.random.default_rng(13)
    series = _series(rng, 8, 300)
    bank = make_bank_()
    scalars = [make_scalar() for _ in series]
    pos = [0] * 8
    # Grow one slot at a time (as new series appear), feeding as we go.
    for size in range(1, 9):
        bank.grow(size)
        _run(bank, make_scalar, series[:size], rng, scalars=scalars, pos=pos, stop=20 * size)
    assert bank.size == 8
    _run(bank, make_scalar, series, rng, scalars=scalars, pos=pos, stop=150)
    # Reset three slots: they behave as brand-new detectors, the others carry on.
    reset = np.array([1, 4, 6], np.int64)
    bank.reset(reset)
    for k in reset.tolist():
        scalars[k] = make_scalar()
    seen = _run(bank, make_scalar, series, rng, scalars=scalars, pos=pos)
    assert seen["active"] > 0


# -- ThresholdBank and RangeBank -------------------------------------------------------


@FAST
@given(
    st.booleans(),
    st.floats(-50, 50),
    st.lists(st.tuples(st.floats(0, 30), st.sampled_from(list(Severity))), min_size=0, max_size=4),
    st.floats(0, 10),
    st.integers(0, 2**32 - 1),
)
def test_threshold_bank_equals_the_scalar_detector(above, first, more, gap, seed):
    sign = 1 if above else -1
    levels = [(first, Severity.WARNING)] + [(first + sign * d, sev) for d, sev in more]
    clear = first - sign * gap
    rng = np.random.default_rng(seed)
    series = []
    for k in range(12):
        t = _times(rng, 150)
        v = first + rng.normal(0, 15, len(t))
        if k % 3 == 0:
            v = np.round(v)  # land exactly on levels and the clear level
        if k % 4 == 0:
            v[::5] = first
            v[1::7] = clear
        series.append((t, v))

    def make() -> ThresholdDetector:
        return ThresholdDetector(levels=levels, above=above, clear=clear)

    _run(ThresholdBank(levels=levels, above=above, clear=clear), make, series, rng)


@FAST
@given(
    st.one_of(st.none(), st.floats(-100, 0)),
    st.one_of(st.none(), st.floats(0, 100)),
    st.integers(0, 2**32 - 1),
)
def test_range_bank_equals_the_scalar_detector(low, high, seed):
    if low is None and high is None:
        with pytest.raises(ValueError, match="low or a high"):
            RangeBank()
        return
    rng = np.random.default_rng(seed)
    series = []
    for _ in range(8):
        t = _times(rng, 100)
        v = np.round(rng.normal(0, 80, len(t)))
        v[::9] = low if low is not None else 0.0
        v[::11] = high if high is not None else 0.0
        series.append((t, v))
    _run(RangeBank(low=low, high=high), lambda: RangeDetector(low=low, high=high), series, rng)


def test_threshold_bank_refuses_what_the_scalar_refuses():
    with pytest.raises(ValueError, match="clear level"):
        ThresholdBank(levels=[(30.0, Severity.MAJOR)], above=True, clear=31.0)
    with pytest.raises(ValueError, match="at least one level"):
        ThresholdBank(levels=[])
    with pytest.raises(ValueError, match="clear <= threshold"):
        AdaptiveBank(threshold=2.0, clear=3.0)


# -- ScalarBank and make_bank ----------------------------------------------------------


def test_scalar_bank_reports_the_detector_value():
    """A rate detector's value is the rate, not the reading."""
    bank = ScalarBank(lambda: RateDetector(max_rate=1.0))
    bank.grow(2)
    slots = np.array([0, 1], np.int64)
    first = bank.update(slots, np.array([0, 0]) * S, np.array([10.0, 10.0]))
    assert not first.valid.any()
    then = bank.update(slots, np.array([2, 2]) * S, np.array([16.0, 11.0]))
    assert then.value.tolist() == [3.0, 0.5]
    signal = then.signal(0, bank.describe(then, 0))
    assert signal is not None
    assert signal.active
    assert signal.value == 3.0
    assert signal.message == "rate +3/s beyond 1"


RULES = parse_rules(
    {
        "rules": [
            {"id": "a", "kind": "adaptive", "season_buckets": 0, "warmup": 5},
            {"id": "t", "kind": "threshold", "above": 30, "levels": {"critical": 40}},
            {"id": "r", "kind": "range", "low": -40, "high": 125},
            {"id": "f", "kind": "range"},
            {"id": "rate", "kind": "rate", "max_rate": 2},
            {"id": "flat", "kind": "flatline", "duration": "1m"},
            {"id": "d", "kind": "deadman", "silence": "5m", "scope": "series"},
            {"id": "o", "kind": "offline"},
            {
                "id": "p",
                "kind": "pattern",
                "conditions": [{"member": "a/b", "op": ">", "value": 1}],
            },
            {"id": "g", "kind": "aggregate", "above": 5},
        ]
    }
)


def test_make_bank_by_rule_kind():
    banks = {rule.id: make_bank(rule) for rule in RULES.rules}
    assert isinstance(banks["a"], AdaptiveBank)
    assert banks["a"].season_us is None
    assert banks["a"].warmup == 5
    assert isinstance(banks["t"], ThresholdBank)
    assert [lvl for lvl, _ in banks["t"].levels] == [30.0, 40.0]
    assert isinstance(banks["r"], RangeBank)
    assert banks["f"] is None  # faults only: the engine's business
    assert isinstance(banks["rate"], ScalarBank)
    assert isinstance(banks["flat"], ScalarBank)
    assert banks["d"] is None
    assert banks["o"] is None
    assert banks["p"] is None
    assert isinstance(banks["g"], ThresholdBank)


def test_made_scalar_banks_run_the_rules_detector():
    bank = make_bank(RULES.by_id["flat"])
    bank.grow(1)
    slot = np.array([0], np.int64)
    for i in range(61):
        signals = bank.update(slot, np.array([i * S]), np.array([5.0]))
    assert signals.active[0]
    assert bank.describe(signals, 0) == "no variation beyond 0 for 60s"


@pytest.mark.parametrize(
    "bank",
    [AdaptiveBank(), ThresholdBank(levels=[(1.0, Severity.MINOR)]), RangeBank(high=1.0)],
    ids=["adaptive", "threshold", "range"],
)
def test_an_empty_round_is_fine(bank):
    bank.grow(3)
    empty = np.array([], np.int64)
    signals = bank.update(empty, empty, np.array([], np.float64))
    assert len(signals) == 0
    assert signals.active.dtype == np.bool_
