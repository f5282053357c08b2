"""Explainable alarms: the detail from the anomaly bank to the event, the line, the views."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np

from contract.alarms import AlarmDetail, AlarmRaisedEvent, decode_alarm, encode_alarm
from dataflows.detectors.anomaly_bank import AnomalyBank
from dataflows.explain import bank_detail
from dataflows.offline import OfflineEvents, run_offline
from dataflows.rules import default_rules
from gateway.dashboard.board import AlarmBoard
from gateway.influx.lineprotocol import alarm_line
from gateway.views import AlarmRow, Views
from gateway.views.bands import Bucket, trailing_band
from gateway.views.explain import why
from gateway.views.fake import FakeQueryRunner

S = 1_000_000
T0 = datetime(2026, 3, 1, tzinfo=UTC)
T0_US = int(T0.timestamp()) * S


def _series(n: int = 400, jump_at: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    values = 20.0 + rng.normal(0, 0.2, n)
    values[jump_at:] += 8.0  # a clear level shift
    return T0_US + np.arange(n, dtype=np.int64) * S, values


def test_anomaly_alarm_events_say_why() -> None:
    t, values = _series()
    columns = OfflineEvents(
        event_ids=[f"e{i}" for i in range(len(t))],
        counts=np.ones(len(t), np.int64),
        sensors=["env"] * len(t),
        metrics=["temperature"] * len(t),
        t_us=t,
        values=values,
    )
    rules = default_rules()
    alarms = run_offline(rules, "site", "dev", columns).alarms
    [raised] = [a for a in alarms if isinstance(a, AlarmRaisedEvent) and a.data.kind == "anomaly"]
    d = raised.data.detail
    assert d is not None
    assert d.component in {"prediction_error", "likelihood", "level_shift"}
    assert d.score is not None and d.score > 1  # noqa: PT018 - both needed
    assert d.expected is not None
    assert math.isclose(d.expected, 20.0, abs_tol=0.5)
    assert d.band_low is not None and d.band_high is not None  # noqa: PT018
    assert d.band_low < d.expected < d.band_high
    assert not d.band_low <= raised.data.value <= d.band_high  # the reading is outside it
    assert d.history_readings == round(1 / rules.by_id["anomaly"].history)
    assert decode_alarm(encode_alarm(raised)) == raised


def test_bank_detail_is_the_banks_own_arrays_for_one_entry() -> None:
    bank = AnomalyBank(warmup=5)
    bank.grow(2)
    slots = np.asarray([0, 1], np.int64)
    for k in range(50):
        signals = bank.update(slots, np.full(2, k * S), np.asarray([1.0 + 0.01 * (k % 3), 5.0]))
    signals = bank.update(slots, np.full(2, 60 * S), np.asarray([40.0, 5.0]))
    detail = bank_detail(bank, signals, 0)
    assert detail is not None
    assert detail.expected == float(signals.threshold[0])
    band = float(signals.detail["band"][0])
    assert detail.band_high == detail.expected + band
    assert detail.score == float(signals.detail["score"][0])
    assert detail.component == "prediction_error"
    assert detail.readings_since_fired == 0


def test_alarm_line_stores_the_detail_and_the_folded_count() -> None:
    event = AlarmRaisedEvent.create(
        alarm_id="a1", site="s", device="d", sensor="env", metric="t", rule="anomaly",
        kind="anomaly", severity="warning", state="active", value=30.0, threshold=20.0,
        message="m", event_time=T0, raised_at=T0, folded_raises=3, rate_limited=True,
        detail=AlarmDetail(component="level_shift", score=2.5, expected=20.0, band_low=18.5,
                           band_high=21.5, history_readings=500, tail_probability=1e-9),
    )  # fmt: skip
    line = alarm_line(event)
    for field in (
        'component="level_shift"',
        "score=2.5",
        "expected=20.0",
        "band_low=18.5",
        "band_high=21.5",
        "history_readings=500i",
        "tail_probability=1e-09",
        "folded_raises=3i",
        "rate_limited=true",
    ):
        assert field in line
    row = {
        "time": int(T0.timestamp()) * 10**9, "alarm_id": "a1", "site": "s", "device": "d",
        "metric": "t", "rule": "anomaly", "severity": "warning", "state": "active",
        "component": "level_shift", "score": 2.5, "expected": 20.0, "band_low": 18.5,
        "band_high": 21.5, "history_readings": 500, "folded_raises": 3, "rate_limited": True,
    }  # fmt: skip
    alarm = AlarmRow.from_row(row)
    assert alarm.detail == {
        "component": "level_shift", "score": 2.5, "expected": 20.0, "band_low": 18.5,
        "band_high": 21.5, "history_readings": 500,
    }  # fmt: skip
    doc = alarm.as_json()
    assert doc["why"] == (
        "expected 20 in [18.5, 21.5]; level shift, score 2.50; history 500 readings;"
        " 3 more occurrence(s) folded in (rate limited)"
    )
    board = AlarmBoard()
    board.apply_event(event)
    [live] = board.active()
    assert live["detail"]["band_high"] == 21.5
    assert live["why"] == why(live["detail"], 3, True)


def test_why_words_the_deadman_and_says_nothing_without_detail() -> None:
    assert why(None) == ""
    text = why({"component": "silence", "cadence_s": 300.0, "silence_s": 900.0,
                "history_readings": 16})  # fmt: skip
    assert text == "median interval 300s; silence allowed 900s; history 16 intervals"


def _buckets(means: list[float], within: float = 0.5) -> list[Bucket]:
    return [Bucket(T0 + timedelta(seconds=10 * i), m, within) for i, m in enumerate(means)]


def test_expected_band_uses_only_the_buckets_before() -> None:
    means = [20.0] * 40 + [35.0] + [20.0] * 5
    band = trailing_band("env/t", _buckets(means))
    assert len(band) == len(means) - 5  # no band before 5 buckets of history
    spike = band[40 - 5]
    assert spike.time == T0 + timedelta(seconds=400)
    assert (spike.low, spike.centre, spike.high) == (18.5, 20.0, 21.5)  # 20 ± 3 x 0.5
    assert not spike.low <= 35.0 <= spike.high  # the spike is outside its own band
    after = band[-1]
    assert after.high < 23  # one spike in the history barely widens the band (robust)
    moving = trailing_band("env/t", _buckets([float(i) for i in range(40)], within=0.0))
    assert moving[-1].centre == 23.5  # median of the 30 buckets before the last (9..38)
    assert math.isclose(moving[-1].high - moving[-1].centre, 3 * 1.4826 * 7.5)


def test_views_expected_band_reads_the_stored_aggregates_with_a_lookback() -> None:
    start = T0 + timedelta(minutes=5)
    rows = [
        {"time": int((T0 + timedelta(seconds=10 * i)).timestamp()) * 10**9, "sensor": "env",
         "metric": "t", "mean": 20.0, "sd": 0.3, "between": None}
        for i in range(60)
    ]  # fmt: skip
    runner = FakeQueryRunner(answers=[("10s", rows)])  # no raw readings
    interval, band = Views(runner).expected_band(
        "s", "d", start=start, end=start + timedelta(minutes=5), interval="10s"
    )
    assert interval == "10s"
    [statement] = runner.statements
    assert "\"window\" = '10s'" in statement
    assert f"time >= {int((start - timedelta(seconds=300)).timestamp()) * 10**9}" in statement
    assert band[0].time == start - timedelta(seconds=10)
    assert all(p.series == "env/t" for p in band)
    assert math.isclose(band[-1].high, 20.9)
