import math

import numpy as np
import pytest

from contract.alarms import Severity
from contract.errors import ConfigError
from dataflows.detectors import anomaly
from dataflows.detectors.anomaly import AnomalyDetector
from dataflows.rules import AnomalyRule, default_rules, parse_rules

S = 1_000_000
T0 = 1_780_000_000 * S


def feed(det, values, start=0, step=300):
    return [det.update(T0 + (start + i) * step * S, float(v)) for i, v in enumerate(values)]


def raises(signals):
    out, before = [], False
    for i, s in enumerate(signals):
        now = bool(s and s.active)
        if now and not before:
            out.append(i)
        before = now
    return out


def noise(n, seed=1, sd=1.0, level=50.0):
    return level + np.random.default_rng(seed).normal(0, sd, n)


def test_warmup_and_nan_say_nothing():
    det = AnomalyDetector(warmup=10)
    assert all(s is None for s in feed(det, noise(10)))
    assert det.update(T0 + 10**9 * S, math.nan) is None
    assert det.update(T0 + 10**9 * S + 1, 50.0) is not None


def test_prediction_follows_a_random_walk_and_a_noisy_level():
    walk = np.cumsum(np.random.default_rng(2).normal(0, 1, 2000))
    det = AnomalyDetector()
    signals = feed(det, walk)
    # phi near 1: the expected value is about the last reading, not the level.
    errors = [abs(s.threshold - v) for s, v in zip(signals[-200:], walk[-200:], strict=True)]
    assert np.mean(errors) < 1.2
    assert raises(signals) == []
    det = AnomalyDetector()
    level = feed(det, noise(2000))
    assert abs(level[-1].threshold - 50) < 0.7  # phi near 0: the level
    assert raises(level) == []


def test_prediction_error_fires_on_a_spike_and_says_why():
    det = AnomalyDetector()
    values = noise(1000)
    values[800] = 90
    signals = feed(det, values)
    assert raises(signals) == [800]
    message = signals[800].message
    assert "component: prediction error" in message
    assert "90 vs expected 49.8" in message
    assert "±" in message
    assert "history ~500 readings" in message
    assert signals[800].severity == Severity.MAJOR


def test_anomaly_likelihood_fires_when_the_noise_grows(monkeypatch):
    monkeypatch.setattr(anomaly, "EXTREME_Z", 1e9)  # new extremes off: only the likelihood
    values = noise(1500, sd=1.0)
    values[1000:1100] = noise(100, seed=9, sd=6.0)
    det = AnomalyDetector(spike=1e6)  # prediction error off
    signals = feed(det, values)
    found = raises(signals)
    assert found
    assert 1000 <= found[0] < 1010
    assert "component: anomaly likelihood" in signals[found[0]].message
    assert "tail probability" in signals[found[0]].message


@pytest.mark.parametrize("hold_on_errors", [True, False])
def test_the_alarm_holds_while_a_burst_of_noise_goes_on(monkeypatch, hold_on_errors):
    if not hold_on_errors:
        monkeypatch.setattr(anomaly, "HOLD_LIKELIHOOD", 1e9)
    values = noise(1500, sd=1.0)
    values[1000:1030] = noise(30, seed=9, sd=4.0)  # the level does not move
    signals = feed(AnomalyDetector(), values, step=1)
    held = sum(bool(s.active) for s in signals[1000:1030])
    assert held >= 25 if hold_on_errors else held <= 5
    assert not any(s.active for s in signals[1050:])


def test_level_shift_fires_and_holds_while_the_shift_lasts():
    # SKAB-like: one reading a second, a 4-sigma shift for 300 s, then back.
    values = noise(1600, sd=1.0)
    values[1000:1300] += 4.0  # no single reading is a spike
    det = AnomalyDetector(likelihood=1e6)
    signals = feed(det, values, step=1)
    found = raises(signals)
    assert len(found) == 1
    assert 1000 <= found[0] < 1020
    assert "component: level shift" in signals[found[0]].message
    held = sum(bool(s.active) for s in signals[1000:1300])
    assert held > 270  # the alarm lasts as long as the shift (it was ~9 readings)
    assert not any(s.active for s in signals[1330:])  # and ends when the level is back


def test_a_moderate_lasting_shift_fires_by_persistence():
    # The 6-sd shift test off: a 3-sigma shift still fires once it has lasted.
    values = noise(1600, sd=1.0)
    values[1000:1400] += 3.0
    det = AnomalyDetector(likelihood=1e6, shift=1e6)
    signals = feed(det, values, step=1)
    found = raises(signals)
    assert found
    assert 1015 <= found[0] < 1060
    assert "component: level shift" in signals[found[0]].message
    assert sum(bool(s.active) for s in signals[1000:1400]) > 300


def ar1(n, seed, phi=0.7, level=50.0):
    shocks = np.random.default_rng(seed).normal(0, 1, n)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + shocks[i]
    return level + x


@pytest.mark.parametrize("robust", [True, False])
def test_a_slow_onset_is_not_absorbed_before_it_is_seen(monkeypatch, robust):
    # Autocorrelated noise; the level slides 5 of its sigmas over 60 readings and
    # stays. The history of the baseline distance must not learn the slide as normal
    # variation (ROBUST_SD); without that, this alarm is missed altogether.
    if not robust:
        monkeypatch.setattr(anomaly, "ROBUST_SD", 1e9)
    values = ar1(1600, seed=1)
    values[1000:1060] += np.linspace(0, 7, 60)
    values[1060:1400] += 7.0
    signals = feed(AnomalyDetector(likelihood=1e6), values, step=1)
    held = sum(bool(s.active) for s in signals[1060:1400])
    assert held > 300 if robust else held == 0


def test_hold_is_bounded_then_the_new_level_is_learnt():
    values = noise(3000, sd=1.0)
    values[1000:] += 8.0  # a new level for good
    det = AnomalyDetector(likelihood=1e6, hold_us=600 * S)
    signals = feed(det, values, step=1)
    found = raises(signals)
    assert found
    assert 1000 <= found[0] < 1005
    last_active = max(i for i, s in enumerate(signals) if s and s.active)
    assert last_active <= found[0] + 601  # held at most `hold` of event time
    assert found == [found[0]]  # then learnt: no second alarm for the same level


def test_new_extreme_fires_on_a_moderate_error_beyond_the_recent_range():
    values = noise(1500, sd=1.0)
    values[1200] = values[:1200].max() + 4.0  # ~7 robust sigmas: below the spike test
    signals = feed(AnomalyDetector(likelihood=1e6, shift=1e6), values)
    assert raises(signals) == [1200]
    assert "component: new extreme" in signals[1200].message
    assert "beyond the recent range" in signals[1200].message
    # The same error inside the range (earlier, larger excursions) is no anomaly.
    values[300] = values[1200] + 6.0
    values[1200] -= 0.5
    signals = feed(AnomalyDetector(likelihood=1e6, shift=1e6), values)
    assert 1200 not in raises(signals)


def test_new_extremes_by_a_trend_are_quiet():
    # Every reading of a steady climb is a new maximum, each by a small step.
    values = np.linspace(0, 50, 3000) + noise(3000, sd=1.0, level=0)
    signals = feed(AnomalyDetector(), values)
    assert raises(signals) == []


def test_the_recent_range_forgets_old_extremes():
    values = noise(7000, sd=1.0)
    values[500] = 200.0  # in the block before last by reading 6500: forgotten
    values[6500] = values[1000:6500].max() + 4.0
    signals = feed(AnomalyDetector(likelihood=1e6, shift=1e6), values)
    assert 6500 in raises(signals)


def test_suppression_after_a_detection_needs_a_larger_anomaly():
    values = noise(2000)
    values[800] = 70
    values[850] = 62  # smaller, within the refractory period: no second alarm
    values[880] = 400  # much larger: raises
    det = AnomalyDetector()
    assert raises(feed(det, values)) == [800, 880]
    assert raises(feed(AnomalyDetector(refractory=0), values))[:2] == [800, 850]


def test_seasonal_error_scale_learns_a_daily_jump():
    # A jump at the same time every day (288 readings a day) stops alarming once learnt.
    day = np.r_[np.full(144, 20.0), np.full(144, 80.0)]
    values = np.tile(day, 8) + noise(288 * 8, sd=0.1, level=0)
    signals = feed(AnomalyDetector(), values)
    late = [i for i in raises(signals) if i >= 288 * 3]
    assert late == []


def test_stuck_sensor():
    values = noise(1000)
    values[700:760] = values[700]
    signals = feed(AnomalyDetector(), values)
    assert any("stuck at" in s.message for s in signals[700:760] if s.active)


def test_stuck_learns_the_longest_normal_run():
    # Counts that sit at zero for 12 readings every night are not stuck for that;
    # a run twice as long is.
    rng = np.random.default_rng(4)
    days = []
    for _ in range(12):
        days += [0.0] * 12 + list(rng.poisson(20, 60).astype(float))
    values = np.array(days + [0.0] * 12 + list(rng.poisson(20, 60)) + [0.0] * 30 + [20.0])
    signals = feed(AnomalyDetector(warmup=20), values)
    stuck = [i for i, s in enumerate(signals) if s and s.active and "stuck at" in s.message]
    assert stuck
    assert min(stuck) >= len(days) + 72


@pytest.mark.parametrize("extreme", [1e308, -1e308, math.inf, -math.inf])
def test_extreme_values_never_raise_or_poison_the_state(extreme):
    det = AnomalyDetector(warmup=20)
    values = list(noise(300))
    values[100] = extreme
    values[101] = -extreme
    signals = feed(det, values)
    assert signals[100].active
    assert all(math.isfinite(s.threshold) for s in signals[20:])
    assert not signals[-1].active or signals[-1].message
    state = det.snapshot()
    for key, value in state.items():
        if isinstance(value, float):
            assert math.isfinite(value), key


def test_snapshot_restore_continues_identically():
    values = noise(900)
    values[600] = 100
    a = AnomalyDetector()
    feed(a, values[:500])
    b = AnomalyDetector()
    b.restore(a.snapshot())
    rest_a = feed(a, values[500:], start=500)
    rest_b = feed(b, values[500:], start=500)
    assert rest_a == rest_b


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="history"):
        AnomalyDetector(history=1.5)
    with pytest.raises(ValueError, match="rearm"):
        AnomalyDetector(rearm=0.5)
    with pytest.raises(ValueError, match="spike"):
        AnomalyDetector(spike=-1)


def test_rule_model_defaults_validation_and_default_rules():
    rule = AnomalyRule(id="a", kind="anomaly")
    assert (rule.spike, rule.warmup, rule.refractory, rule.rearm) == (6.0, 100, 100, 3.0)
    assert rule.hold == 600 * S  # a duration: "10m"
    assert AnomalyRule(id="a", kind="anomaly", hold="1h").hold == 3600 * S
    with pytest.raises(ConfigError, match=r"rules\[0\]\.history"):
        parse_rules({"rules": [{"id": "a", "kind": "anomaly", "history": 2}]})
    with pytest.raises(ConfigError, match=r"rules\[0\]\.spike"):
        parse_rules({"rules": [{"id": "a", "kind": "anomaly", "spike": "nan"}]})
    kinds = {r.kind for r in default_rules().rules}
    assert kinds == {"anomaly", "deadman", "offline"}
    adaptive = parse_rules({"defaults": {"adaptive": True}})
    assert [r.kind for r in adaptive.rules] == ["adaptive"]
