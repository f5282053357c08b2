import random

import pytest

from contract.alarms import Severity
from dataflows.detectors import (
    AdaptiveDetector,
    Condition,
    DeadmanDetector,
    FlatlineDetector,
    PatternDetector,
    RangeDetector,
    RateDetector,
    ThresholdDetector,
)

S = 1_000_000


def test_threshold_hysteresis_boundaries():
    d = ThresholdDetector(levels=[(30.0, Severity.MAJOR)], above=True, clear=28.0)
    assert not d.update(0, 30.0).active  # at the level: not above
    assert d.update(1, 30.01).active
    assert d.update(2, 28.5).active  # between clear and raise: still on
    assert d.update(3, 28.0001).active
    assert not d.update(4, 28.0).active  # at the clear level: off
    assert not d.update(5, 29.9).active  # below the raise level: stays off


def test_threshold_below_and_escalation():
    d = ThresholdDetector(
        levels=[(5.0, Severity.MINOR), (0.0, Severity.CRITICAL)], above=False, clear=6.0
    )
    s = d.update(0, 4.0)
    assert s.active
    assert s.severity is Severity.MINOR
    assert s.threshold == 5.0
    s = d.update(1, -1.0)
    assert s.active
    assert s.severity is Severity.CRITICAL
    assert s.threshold == 0.0
    assert d.update(2, 5.5).active
    assert not d.update(3, 6.0).active


def test_threshold_refuses_clear_on_wrong_side():
    with pytest.raises(ValueError, match="clear level"):
        ThresholdDetector(levels=[(30.0, Severity.MAJOR)], above=True, clear=31.0)


def test_threshold_snapshot_restore():
    d = ThresholdDetector(levels=[(30.0, Severity.MAJOR)], clear=20.0)
    d.update(0, 31.0)
    e = ThresholdDetector(levels=[(30.0, Severity.MAJOR)], clear=20.0)
    e.restore(d.snapshot())
    assert e.update(1, 25.0).active


def test_range_detector():
    d = RangeDetector(low=-40.0, high=125.0)
    assert d.update(0, 200.0).active
    assert d.update(0, -50.0).active
    assert not d.update(0, 20.0).active
    with pytest.raises(ValueError, match="low or a high"):
        RangeDetector()


def test_rate_per_second_and_first_reading():
    d = RateDetector(max_rate=1.0)
    assert d.update(0, 10.0) is None
    assert not d.update(2 * S, 11.0).active  # 0.5/s
    s = d.update(3 * S, 13.0)  # 2/s
    assert s.active
    assert s.value == pytest.approx(2.0)
    assert d.update(4 * S, 13.5).active is False


def test_rate_per_window_and_direction():
    d = RateDetector(max_rate=5.0, window_us=60 * S, direction="up")
    assert d.update(0, 0.0) is None
    for i in range(1, 60):
        d.update(i * S, i * 0.05)
    assert not d.update(60 * S, 3.0).active
    assert d.update(61 * S, 6.0).active  # 6.0 - 0.05 over the window
    down = RateDetector(max_rate=1.0, direction="up")
    down.update(0, 10.0)
    assert not down.update(S, 0.0).active  # a fall is not a rise


def test_rate_snapshot_restore():
    d = RateDetector(max_rate=1.0)
    d.update(0, 0.0)
    e = RateDetector(max_rate=1.0)
    e.restore(d.snapshot())
    assert e.update(S, 5.0).active


def test_flatline():
    d = FlatlineDetector(duration_us=10 * S, tolerance=0.01)
    for i in range(10):
        assert not d.update(i * S, 5.0 + (i % 2) * 0.005).active
    assert d.update(10 * S, 5.0).active
    assert not d.update(11 * S, 5.5).active  # varies again: a new run
    e = FlatlineDetector(duration_us=10 * S, tolerance=0.01)
    e.restore(d.snapshot())
    assert e.update(21 * S, 5.5).active


def test_deadman_check_and_seen():
    d = DeadmanDetector(silence_us=60 * S)
    assert d.check(10**12) is None  # never seen: nothing to say
    d.seen(0)
    assert d.due_us() == 60 * S
    assert d.check(59 * S) is None
    s = d.check(60 * S)
    assert s is not None
    assert s.active
    assert s.value == 60
    assert not d.seen(61 * S).active
    assert d.check(100 * S) is None


def test_pattern_all_within():
    p = PatternDetector(
        conditions=[Condition("*/temperature", ">", 30), Condition("*/humidity", "<", 20)],
        mode="all",
        within_us=60 * S,
    )
    assert p.update(0, "env/pressure", 1.0) is None  # no condition looks at it
    assert not p.update(0, "env/temperature", 31).active
    assert p.update(30 * S, "env/humidity", 10).active
    p.update(40 * S, "env/temperature", 25)
    assert p.update(80 * S, "env/humidity", 10).active  # temperature held 40 s ago
    assert not p.update(101 * S, "env/humidity", 10).active  # now 61 s ago


def test_pattern_any():
    p = PatternDetector(
        conditions=[Condition("a/x", ">", 1), Condition("a/y", ">", 1)], mode="any", within_us=S
    )
    assert p.update(0, "a/y", 2).active
    assert not p.update(1, "a/y", 0).active


def test_pattern_sequence_followed_by_within():
    p = PatternDetector(
        conditions=[Condition("*/door", "==", 1), Condition("*/temperature", ">", 8)],
        mode="sequence",
        within_us=300 * S,
    )
    assert not p.update(0, "s/temperature", 9).active  # B before A
    p.update(S, "s/temperature", 5)
    p.update(10 * S, "s/door", 1)
    assert p.update(100 * S, "s/temperature", 9).active  # A then B within 300 s
    assert not p.update(110 * S, "s/temperature", 5).active
    q = PatternDetector(
        conditions=[Condition("*/door", "==", 1), Condition("*/temperature", ">", 8)],
        mode="sequence",
        within_us=60 * S,
    )
    q.update(0, "s/door", 1)
    assert not q.update(100 * S, "s/temperature", 9).active  # too late


def test_pattern_count_within_and_restore():
    p = PatternDetector(
        conditions=[Condition("*/vibration", ">", 5)], mode="count", within_us=60 * S, count=3
    )
    for i, v in enumerate([6, 1, 6, 1]):
        assert not p.update(i * S, "m/vibration", v).active
    assert p.update(5 * S, "m/vibration", 7).active  # third rise within 60 s
    q = PatternDetector(
        conditions=[Condition("*/vibration", ">", 5)], mode="count", within_us=60 * S, count=3
    )
    q.restore(p.snapshot())
    assert q.update(6 * S, "m/vibration", 7).active
    assert not q.update(70 * S, "m/vibration", 7).active  # the rises aged out


def test_pattern_rejects_bad_arguments():
    with pytest.raises(ValueError, match="op must be"):
        Condition("x", "=>", 1)
    with pytest.raises(ValueError, match="at least one condition"):
        PatternDetector(conditions=[], mode="all", within_us=S)
    with pytest.raises(ValueError, match="mode must be"):
        PatternDetector(conditions=[Condition("x", ">", 1)], mode="some", within_us=S)


def _noise(n, seed=1, sigma=1.0, level=20.0):
    rng = random.Random(seed)
    return [level + rng.gauss(0, sigma) for _ in range(n)]


def test_adaptive_warmup_then_quiet_on_noise():
    d = AdaptiveDetector()
    values = _noise(2000)
    signals = [d.update(i * S, v) for i, v in enumerate(values)]
    assert all(s is None for s in signals[:60])
    active = sum(1 for s in signals[60:] if s is not None and s.active)
    assert active <= 2  # a 6-sigma threshold on Gaussian noise


def test_adaptive_spike_and_robustness():
    d = AdaptiveDetector()
    values = _noise(500)
    for i, v in enumerate(values):
        d.update(i * S, v)
    s = d.update(500 * S, 40.0)
    assert s is not None
    assert s.active
    assert s.severity is Severity.MAJOR
    # One outlier barely moves the learnt level: the next normal reading is quiet.
    assert not d.update(501 * S, 20.0).active


def test_adaptive_level_shift_persists_then_is_learnt():
    d = AdaptiveDetector()
    for i, v in enumerate(_noise(300)):
        d.update(i * S, v)
    shifted = [d.update((300 + i) * S, v) for i, v in enumerate(_noise(3000, seed=2, level=30))]
    assert all(s.active for s in shifted[:60])  # a lasting anomaly is not absorbed at once
    assert not shifted[-1].active  # a permanent change is accepted eventually


def test_adaptive_quantised_constant_series():
    d = AdaptiveDetector()
    values = [32.0] * 200 + [33.0] + [32.0] * 50
    signals = [d.update(i * S, v) for i, v in enumerate(values)]
    assert not any(s is not None and s.active for s in signals[:200])
    d2 = AdaptiveDetector()
    values = [32.0 + (i % 7 == 0) for i in range(300)]
    signals = [d2.update(i * S, v) for i, v in enumerate(values)]
    assert not any(s is not None and s.active for s in signals)


def test_adaptive_snapshot_restore_is_exact():
    a, b = AdaptiveDetector(), AdaptiveDetector()
    values = [*_noise(400), 35.0, *_noise(50, seed=3)]
    for i, v in enumerate(values[:200]):
        a.update(i * S, v)
    b.restore(a.snapshot())
    for i, v in enumerate(values[200:], start=200):
        sa, sb = a.update(i * S, v), b.update(i * S, v)
        assert sa == sb


def _shift_profile(day_index_from, days, detector):
    """Count raises in the given days of a machine on 08:00-16:00 (one reading a minute)."""
    rng = random.Random(4)
    raises, was = 0, False
    for i in range(days * 24 * 60):
        t = i * 60 * S
        hour = (t // (3600 * S)) % 24
        v = (100.0 if 8 <= hour < 16 else 10.0) + rng.gauss(0, 1.0)
        s = d if (d := detector.update(t, v)) is not None else None
        active = s is not None and s.active
        if active and not was and i >= day_index_from * 24 * 60:
            raises += 1
        was = active
    return raises


def test_adaptive_learns_a_daily_cycle_after_two_days():
    seasonal = _shift_profile(3, 5, AdaptiveDetector())
    plain = _shift_profile(3, 5, AdaptiveDetector(season_buckets=0))
    assert plain >= 2  # every shift start alarms without seasons
    assert seasonal == 0
    snap = AdaptiveDetector().snapshot()
    assert len(snap["season"]) == 24


def test_adaptive_flags_a_stuck_sensor_but_not_a_constant_series():
    d = AdaptiveDetector()
    values = _noise(300)
    for i, v in enumerate(values):
        d.update(i * S, round(v, 2))
    signals = [d.update((300 + i) * S, 20.5) for i in range(30)]
    stuck = [s for s in signals if s is not None and s.active]
    assert stuck
    assert "stuck" in stuck[0].message
    assert signals.index(stuck[0]) >= 9  # a run of at least stuck_min repeats
    assert not d.update(330 * S, 20.2).active
    constant = AdaptiveDetector()
    signals = [constant.update(i * S, 32.0) for i in range(500)]
    assert not any(s is not None and s.active for s in signals)


def test_adaptive_accepts_a_new_regime_after_hold():
    d = AdaptiveDetector(alpha=0.05, hold=20)
    for i, v in enumerate(_noise(200)):
        d.update(i * S, v)
    shifted = [d.update((200 + i) * S, v) for i, v in enumerate(_noise(400, seed=5, level=40))]
    assert shifted[0].active
    assert not shifted[-1].active
