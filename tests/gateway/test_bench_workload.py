"""The benchmark's burst: counts, times, and valid events."""

from __future__ import annotations

import argparse
import itertools
import time
from collections import defaultdict
from datetime import UTC, datetime

import pytest

from contract import TelemetryEvent, TopicScheme, decode
from contract.errors import ConfigError
from gateway.bench.influx_ceiling import render_batches
from gateway.bench.storage import paced_fleet
from gateway.bench.workload import (
    SCENARIOS,
    Workload,
    burst_base_us,
    iter_readings,
    render_burst,
    with_overrides,
)
from simulators.cli.options import add_loadgen
from simulators.links import MemoryPublisher
from simulators.loadgen import LoadPlan, _Messages

SMALL = Workload(devices=20, readings_per_message=20, total=2_000, sensors_per_device=20)
NOW_US = 1_800_000_000_000_000


def _events(workload: Workload) -> list[tuple[str, TelemetryEvent]]:
    burst = render_burst(workload, now_us=NOW_US)
    out = []
    for topic, payload in zip(burst.topics, burst.payloads, strict=True):
        event = decode(payload)
        assert isinstance(event, TelemetryEvent)
        out.append((topic, event))
    return out


def _us(value: datetime) -> int:
    return int(value.timestamp()) * 1_000_000 + value.microsecond


def test_the_peer_scenario_is_the_fixed_workload() -> None:
    w = SCENARIOS["peer"].workload
    assert (w.devices, w.readings_per_message, w.total, w.sensors_per_device, w.qos) == (
        1_000,
        50,
        1_000_000,
        50,
        1,
    )
    assert w.messages == 20_000
    assert w.messages_per_device == 20
    assert w.series == 50_000
    assert SCENARIOS["burst5m"].workload.total == 5_000_000


def test_series100k_has_ten_series_per_device_and_100k_in_all() -> None:
    w = SCENARIOS["series100k"].workload
    assert w.series_per_device == 10
    assert w.series == 100_000
    assert w.total == 1_000_000


def test_every_payload_is_a_valid_event_on_its_device_topic() -> None:
    scheme = TopicScheme("sg/v1")
    events = _events(SMALL)
    assert len(events) == SMALL.messages == 100
    assert sum(len(e.data.readings) for _, e in events) == SMALL.total
    assert len({e.id for _, e in events}) == len(events)
    for topic, event in events:
        parsed = scheme.parse(topic)
        assert (parsed.site, parsed.device) == (event.data.site, event.data.device)
        assert topic == f"sg/v1/{event.data.site}/{event.data.device}/telemetry"


def test_sequences_count_from_zero_per_device() -> None:
    sequences: dict[str, list[int]] = defaultdict(list)
    for _, event in _events(SMALL):
        sequences[event.data.device].append(event.data.sequence)
    assert len(sequences) == SMALL.devices
    assert all(seqs == list(range(5)) for seqs in sequences.values())


def test_readings_are_1_ms_apart_and_messages_1_s_apart() -> None:
    by_device: dict[str, list[TelemetryEvent]] = defaultdict(list)
    for _, event in _events(SMALL):
        times = [_us(r.time) for r in event.data.readings]
        assert [b - a for a, b in itertools.pairwise(times)] == [1_000] * 19
        assert event.time == event.data.readings[-1].time
        by_device[event.data.device].append(event)
    for events in by_device.values():
        firsts = [_us(e.data.readings[0].time) for e in events]
        assert [b - a for a, b in itertools.pairwise(firsts)] == [1_000_000] * 4


def test_the_whole_burst_lies_in_the_recent_past() -> None:
    events = _events(SMALL)
    last = max(_us(r.time) for _, e in events for r in e.data.readings)
    first = min(_us(r.time) for _, e in events for r in e.data.readings)
    assert first == burst_base_us(SMALL, NOW_US)
    assert NOW_US - 10_000_000 < last < NOW_US
    assert all(r.time.tzinfo is UTC for _, e in events for r in e.data.readings)


def test_a_rendered_burst_is_in_the_past_of_the_real_clock() -> None:
    burst = render_burst(SMALL)
    event = decode(burst.payloads[-1])
    assert isinstance(event, TelemetryEvent)
    assert _us(event.time) < time.time_ns() // 1_000


def test_sensors_and_metrics_cycle() -> None:
    _, event = _events(Workload(devices=2, readings_per_message=50, total=100))[0]
    pairs = [(r.sensor, r.metric) for r in event.data.readings]
    assert pairs[:3] == [("s0", "m0"), ("s1", "m1"), ("s2", "m2")]
    assert pairs[12] == ("s12", "m2")
    assert len(set(pairs)) == 50
    w = Workload(devices=2, readings_per_message=50, total=100, sensors_per_device=10)
    _, event = _events(w)[0]
    assert len({(r.sensor, r.metric) for r in event.data.readings}) == 10


def test_iter_readings_matches_the_rendered_payloads() -> None:
    rendered = [
        (e.data.device, r.sensor, r.metric, r.value, _us(r.time))
        for _, e in _events(SMALL)
        for r in e.data.readings
    ]
    base = burst_base_us(SMALL, NOW_US)
    listed = [(d, s, m, float(v), t) for d, s, m, v, t in iter_readings(SMALL, base)]
    assert listed == rendered


def test_the_ceiling_batches_hold_every_reading_as_line_protocol() -> None:
    batches = render_batches(SMALL, batch_points=300, now_us=NOW_US)
    lines = [line for body in batches for line in body.decode().split("\n")]
    assert [len(b.decode().split("\n")) for b in batches] == [300] * 6 + [200]
    assert len(lines) == SMALL.total
    first = lines[0]
    assert first.startswith("readings,site=bench,device=dev-000000,sensor=s0,metric=m0 value=")
    assert first.endswith(f" {burst_base_us(SMALL, NOW_US)}000")


def test_a_partial_last_round_is_allowed() -> None:
    w = Workload(devices=1_000, readings_per_message=50, total=20_000)
    assert w.messages == 400
    assert w.messages_per_device == 1
    assert w.publishing_devices == 400  # the paced phase's "burst" fleet
    assert w.series == 400 * 50


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"total": 1_001}, "total"),
        ({"devices": 0}, "devices"),
        ({"readings_per_message": 2_000, "total": 2_000}, "readings_per_message"),
        ({"qos": 2}, "qos"),
    ],
)
def test_bad_knobs_are_refused_with_the_field(overrides: dict[str, int], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        with_overrides(SCENARIOS["peer"].workload, **overrides)
    assert field in str(caught.value)


def _series_and_sequences(
    payloads: list[bytes],
) -> tuple[set[tuple[str, ...]], dict[str, list[int]]]:
    series: set[tuple[str, ...]] = set()
    sequences: dict[str, list[int]] = defaultdict(list)
    for payload in payloads:
        event = decode(payload)
        assert isinstance(event, TelemetryEvent)
        data = event.data
        sequences[data.device].append(data.sequence)
        series.update((data.site, data.device, r.sensor, r.metric) for r in data.readings)
    return series, sequences


@pytest.mark.parametrize("scenario", ["peer", "series100k"])
def test_the_paced_phase_continues_the_bursts_own_series_and_sequences(scenario: str) -> None:
    # The paced phase's load generator, given paced_fleet's options, publishes as the
    # burst's devices: the same series, each device's sequence right after its last.
    workload = with_overrides(SCENARIOS[scenario].workload, devices=20, total=20 * 50 * 3)
    burst, burst_sequences = _series_and_sequences(render_burst(workload).payloads)
    parser = argparse.ArgumentParser()
    add_loadgen(parser.add_subparsers())
    args = parser.parse_args(
        ["loadgen", "--devices", str(workload.devices), "--metrics", "10",
         *paced_fleet(workload, "burst")]
    )  # fmt: skip
    plan = LoadPlan(
        rate=None,
        readings_per_message=workload.readings_per_message,
        devices=args.devices,
        metrics=10,
        duration_s=1.0,
        qos=1,
        site=args.site,
        device_prefix=args.device_prefix,
        sensors=args.sensors,
        first_sequence=args.first_sequence,
    )
    publisher = MemoryPublisher()
    _Messages(TopicScheme(workload.topic_prefix), plan).publish(publisher, 2 * workload.devices, 1)
    paced, paced_sequences = _series_and_sequences([m.payload for m in publisher.messages])
    assert paced == burst
    for device, seqs in paced_sequences.items():
        assert seqs == [max(burst_sequences[device]) + 1, max(burst_sequences[device]) + 2]
    assert paced_fleet(workload, "new") == []
