"""Anomaly injection: labels with the right bounds, and data that shows the kind."""

from __future__ import annotations

import itertools
import json
import statistics

import pytest
from sim_helpers import by_device_metric, run_memory, small

from simulators.anomalies import (
    AnomalyKind,
    RandomAnomalies,
    ScheduledAnomaly,
    parse_anomaly_spec,
)
from simulators.labels import JsonLinesLabelSink, Label, read_labels
from simulators.signals import PressureParams


def clean_and_dirty(*anomalies, randoms=(), **kw):
    clean, _, _ = run_memory(small(**kw))
    dirty, labels, report = run_memory(small(anomalies=anomalies, random_anomalies=randoms, **kw))
    return by_device_metric(clean), by_device_metric(dirty), labels, report


def split(series, label):
    inside = [(t, v) for t, v in series if label.covers(t)]
    outside = [(t, v) for t, v in series if not label.covers(t)]
    return inside, outside


def check_bounds(clean_series, label, interval=10.0):
    """The label starts on an affected reading and ends on the first unaffected one."""
    times = [t for t, _ in clean_series]
    assert label.start in times
    inside = [t for t in times if label.covers(t)]
    assert inside[0] == label.start
    after = [t for t in times if t >= label.end]
    if after:
        assert after[0] == label.end
        assert (label.end - inside[-1]).total_seconds() == pytest.approx(interval)


@pytest.mark.parametrize(
    ("kind", "duration", "magnitude"),
    [
        ("spike", None, 25.0),
        ("level_shift", 300.0, 7.0),
        ("drift", 600.0, 12.0),
        ("stuck", 900.0, None),
        ("noise_burst", 600.0, 4.0),
        ("out_of_range", 120.0, None),
    ],
)
def test_scheduled_value_anomaly_is_labelled_and_visible(kind, duration, magnitude):
    spec = ScheduledAnomaly(
        kind=AnomalyKind(kind),
        at_s=1200,
        duration_s=duration,
        metric="temperature",
        device="sim-00001",
        magnitude=magnitude,
    )
    clean, dirty, labels, _ = clean_and_dirty(spec)
    assert len(labels) == 1
    label = labels[0]
    assert (label.site, label.device, label.metric, label.kind) == (
        "sim",
        "sim-00001",
        "temperature",
        kind,
    )
    key = ("sim-00001", "temperature")
    check_bounds(clean[key], label)
    expected_len = 1 if duration is None else int(duration / 10)
    assert (label.end - label.start).total_seconds() == pytest.approx(expected_len * 10)

    clean_in, clean_out = split(clean[key], label)
    dirty_in, dirty_out = split(dirty[key], label)
    assert len(dirty_in) == expected_len
    # outside the label, nothing changed, on this metric or any other, on any device
    assert dirty_out == clean_out
    for other in clean:
        if other != key:
            assert dirty[other] == clean[other]
    deltas = [d - c for (_, d), (_, c) in zip(dirty_in, clean_in, strict=True)]
    values = [v for _, v in dirty_in]
    if kind in ("spike", "level_shift"):
        assert all(x == pytest.approx(magnitude, abs=1e-3) for x in deltas)
    elif kind == "drift":
        n = len(deltas)
        assert deltas == pytest.approx([magnitude * (i + 1) / n for i in range(n)], abs=1e-3)
    elif kind == "stuck":
        assert statistics.pvariance(values) == 0
        assert values[0] == clean_in[0][1]
        assert statistics.pvariance([v for _, v in clean_in]) > 0
    elif kind == "noise_burst":
        assert statistics.pstdev(deltas) == pytest.approx(magnitude, rel=0.5)
    elif kind == "out_of_range":
        assert all(v > 85 for v in values)  # the temperature model's valid upper bound


def test_dropout_silences_the_whole_device_inside_its_label():
    spec = ScheduledAnomaly(kind=AnomalyKind.DROPOUT, at_s=600, duration_s=300, device="sim-00002")
    clean, dirty, labels, report = clean_and_dirty(spec)
    (label,) = labels
    assert (label.metric, label.kind, label.magnitude) == ("*", "dropout", None)
    for metric in ("temperature", "humidity", "pressure"):
        key = ("sim-00002", metric)
        check_bounds(clean[key], label)
        clean_in, clean_out = split(clean[key], label)
        dirty_in, dirty_out = split(dirty[key], label)
        assert len(clean_in) == 30
        assert dirty_in == []
        assert dirty_out == clean_out
    assert report.silent == 30


def test_every_metric_when_no_metric_is_named():
    spec = ScheduledAnomaly(kind=AnomalyKind.STUCK, at_s=100, duration_s=100, device="sim-00000")
    _clean, dirty, labels, _ = clean_and_dirty(spec)
    assert sorted(label.metric for label in labels) == ["humidity", "pressure", "temperature"]
    for label in labels:
        inside, _ = split(dirty[("sim-00000", label.metric)], label)
        assert len({v for _, v in inside}) == 1


def test_random_anomalies_each_appear_in_the_labels_and_in_the_data():
    randoms = (RandomAnomalies(rate_per_hour=3, min_duration_s=60, max_duration_s=300),)
    clean, dirty, labels, _ = clean_and_dirty(randoms=randoms, devices=6, duration_s=6 * 3600)
    assert len(labels) > 50
    assert {label.kind for label in labels} == {k.value for k in AnomalyKind}
    per_device: dict[str, list[Label]] = {}
    for label in labels:
        per_device.setdefault(label.device, []).append(label)
    for device_labels in per_device.values():  # one random anomaly at a time per device
        device_labels.sort(key=lambda lab: lab.start)
        for a, b in itertools.pairwise(device_labels):
            assert a.end <= b.start
    for label in labels:
        metrics = ["temperature", "humidity", "pressure"] if label.metric == "*" else [label.metric]
        for metric in metrics:
            key = (label.device, metric)
            check_bounds(clean[key], label)
            clean_in, _ = split(clean[key], label)
            dirty_in, _ = split(dirty[key], label)
            if label.kind == "dropout":
                assert dirty_in == []
                continue
            values = [v for _, v in dirty_in]
            diffs = [abs(d - c) for (_, d), (_, c) in zip(dirty_in, clean_in, strict=True)]
            if label.kind == "stuck":
                assert len(set(values)) == 1
            elif label.kind == "out_of_range":
                lo, hi = {"temperature": (-40, 85), "humidity": (0, 100), "pressure": (300, 1100)}[
                    metric
                ]
                assert all(v > hi or v < lo for v in values)
            elif label.kind in ("spike", "level_shift"):
                assert all(x == pytest.approx(abs(label.magnitude), abs=1e-3) for x in diffs)
            else:  # drift, noise_burst
                assert max(diffs) > 0


def test_same_seed_same_readings_and_labels(tmp_path):
    randoms = (RandomAnomalies(rate_per_hour=4),)
    a_events, a_labels, _ = run_memory(small(random_anomalies=randoms, seed=9))
    b_events, b_labels, _ = run_memory(small(random_anomalies=randoms, seed=9))
    c_events, c_labels, _ = run_memory(small(random_anomalies=randoms, seed=10))

    def content(events):
        return [(e.data.device, e.data.sequence, e.time, e.data.readings) for e in events]

    assert content(a_events) == content(b_events)
    assert a_labels == b_labels
    assert a_labels  # the comparison is not vacuous
    assert content(a_events) != content(c_events)
    assert a_labels != c_labels
    # and labels survive the JSON lines file unchanged
    path = tmp_path / "labels.jsonl"
    sink = JsonLinesLabelSink(path)
    for label in a_labels:
        sink.add(label)
    sink.close()
    lines = path.read_text().splitlines()
    assert read_labels(lines) == a_labels
    doc = json.loads(lines[0])
    assert set(doc) >= {"site", "device", "metric", "kind", "start", "end"}
    assert doc["start"].endswith("Z")


def test_a_devices_values_do_not_depend_on_the_rest_of_the_fleet():
    few = by_device_metric(run_memory(small(devices=2))[0])
    many = by_device_metric(run_memory(small(devices=5))[0])
    assert [v for _, v in few[("sim-00001", "pressure")]] == [
        v for _, v in many[("sim-00001", "pressure")]
    ]


def test_out_of_range_below_with_a_negative_magnitude():
    from simulators.anomalies import ActiveAnomaly, apply_anomaly

    a = ActiveAnomaly(AnomalyKind.OUT_OF_RANGE, "pressure", 0, 5, -10.0)
    import random

    assert apply_anomaly(a, 1000, 0, random.Random(0), PressureParams().valid_range) == 290


def test_parse_anomaly_spec():
    s = parse_anomaly_spec("stuck@600+300:temperature:sim-00001")
    assert isinstance(s, ScheduledAnomaly)
    assert (s.kind, s.at_s, s.duration_s, s.metric, s.device) == (
        "stuck",
        600,
        300,
        "temperature",
        "sim-00001",
    )
    s = parse_anomaly_spec("spike@10")
    assert (s.duration_s, s.metric, s.device) == (None, "*", "*")
    r = parse_anomaly_spec("dropout~0.5")
    assert isinstance(r, RandomAnomalies)
    assert (r.kinds, r.rate_per_hour) == ((AnomalyKind.DROPOUT,), 0.5)
    assert parse_anomaly_spec("all~1").kinds == tuple(AnomalyKind)
    for bad in ("wobble@1", "spike@x", "spike~0", "spike"):
        with pytest.raises(ValueError, match="expected KIND@START"):
            parse_anomaly_spec(bad)
