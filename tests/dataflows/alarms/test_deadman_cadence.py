"""The deadman's auto silence: each device's cadence, learnt in arrays, bounded memory."""

from datetime import UTC, datetime

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.cadence import CADENCE_INTERVALS, Cadence, CadenceArrays, auto_silence_us
from dataflows.detectors.deadman import CadenceView, DeadmanDetector
from dataflows.eventclock import FakeClock
from dataflows.rules import default_rules, parse_rules
from tests.dataflows.shard_kit import alarm_events, processor, send, telemetry

S = 1_000_000


def test_median_interval_and_its_silence():
    c = Cadence()
    for k in range(10):
        c.observe(k * 300 * S)
    assert (c.count, c.median_us) == (9, 300 * S)
    silence = auto_silence_us(c.median_us, c.count, factor=3, floor_us=30 * S, initial_us=86400 * S)
    assert silence == 900 * S  # a 5-minute sensor is not silent at 300 s
    fast = auto_silence_us(1 * S, 5, factor=3, floor_us=30 * S, initial_us=86400 * S)
    assert fast == 30 * S  # the floor
    assert auto_silence_us(np.nan, 0, factor=3, floor_us=30 * S, initial_us=7 * S) == 7 * S


def test_one_long_gap_does_not_move_the_median_and_memory_is_bounded():
    c = Cadence()
    t = 0
    for k in range(100):
        t += (3600 if k == 50 else 10) * S
        c.observe(t)
    assert c.count == CADENCE_INTERVALS
    assert c.median_us == 10 * S


def test_a_burst_of_queued_messages_keeps_the_cadence_of_their_readings():
    c = Cadence()
    for k in range(20):  # an outage's backlog: arrivals 1 ms apart, readings 60 s apart
        c.observe(10_000 * S + k * 1000, k * 60 * S)
    assert c.median_us == 60 * S
    stuck = Cadence()
    for k in range(20):  # a device clock stuck at one time: the arrivals tell
        stuck.observe(k * 5 * S, 0)
    assert stuck.median_us == 5 * S


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 50), st.integers(0, 50)),
        min_size=1,
        max_size=120,
    ),
    st.lists(st.integers(1, 12), min_size=1, max_size=6),
)
def test_arrays_learn_what_the_scalar_learns(steps, cuts):
    """Any messages of 4 devices, in batches of any size, several per device per batch."""
    arrays = CadenceArrays()
    scalars = [Cadence() for _ in range(4)]
    clock = [0, 0, 0, 0]
    event = [0, 0, 0, 0]
    msgs = []
    for dev, da, de in steps:
        clock[dev] += da * S
        event[dev] += de * S
        msgs.append((dev, clock[dev], event[dev]))
        scalars[dev].observe(clock[dev], event[dev])
    i = 0
    for cut in cuts * 20:
        part = msgs[i : i + cut]
        if not part:
            break
        d, a, e = (np.asarray(x, np.int64) for x in zip(*part, strict=True))
        arrays.observe(d, a, e)
        i += cut
    if msgs[i:]:
        arrays.observe(*(np.asarray(x, np.int64) for x in zip(*msgs[i:], strict=True)))
    for dev in range(4):
        if dev >= arrays.size:
            assert scalars[dev].count == 0
            continue
        assert int(arrays.count[dev]) == scalars[dev].count
        if scalars[dev].count:
            assert arrays.median_us[dev] == scalars[dev].median_us
        snap = arrays.snapshot_of(dev)
        assert (snap or {"intervals": []})["intervals"] == list(scalars[dev].intervals)


def test_arrays_snapshot_restores_the_intervals_not_the_arrivals():
    arrays = CadenceArrays()
    for k in range(5):
        arrays.observe(np.asarray([2]), np.asarray([k * 7 * S]), np.asarray([k * 7 * S]))
    again = CadenceArrays()
    again.restore_of(2, arrays.snapshot_of(2))
    assert (int(again.count[2]), again.median_us[2]) == (4, 7 * S)
    again.observe(np.asarray([2]), np.asarray([10**9 * S]), np.asarray([10**9 * S]))
    assert int(again.count[2]) == 4  # the first message after a restart is no interval


def test_deadman_detector_auto_learns_or_takes_the_callers_cadence():
    d = DeadmanDetector(silence_us=None, floor_us=30 * S, initial_us=3600 * S)
    d.seen(0)
    assert d.due_us() == 3600 * S  # nothing learnt yet
    for k in range(1, 6):
        d.seen(k * 300 * S)
    assert d.due_us() == 1500 * S + 900 * S
    assert d.check(1500 * S + 899 * S) is None
    signal = d.check(1500 * S + 900 * S)
    assert signal is not None
    assert signal.active
    assert "3 x its median interval 300s" in signal.message
    detail = d.detail()
    assert (detail.component, detail.cadence_s, detail.silence_s) == ("silence", 300, 900)
    given_cadence = DeadmanDetector(silence_us=None, learn=False)
    given_cadence.seen(0)
    assert given_cadence.due_us(CadenceView(20 * S, 16)) == 60 * S
    assert given_cadence.due_us() == 86_400 * S


def _minutes(proc, clock, device, every_s, count, seq0=0):
    out = []
    for k in range(count):
        t = datetime.fromtimestamp(clock.t / S, UTC)
        out += alarm_events(send(proc, [telemetry(seq0 + k, t, 20.0, device=device)]))
        clock.advance(every_s)
        out += alarm_events(proc.tick())
    return out


def test_a_five_minute_sensor_is_not_silent_at_300_s_and_a_fast_one_is_after_30_s():
    clock = FakeClock(1_000_000 * S)
    proc = processor(clock, rules=default_rules())
    slow = _minutes(proc, clock, "slow", 300, 12)
    assert [e for e in slow if e.data.rule == "deadman"] == []
    fast = _minutes(proc, clock, "fast", 1, 40, seq0=100)
    assert [e for e in fast if e.data.rule == "deadman"] == []
    # Both fall silent: the fast one is due after 30 s, the slow one after 900 s.
    due = proc.device_rules.due()
    last = np.asarray(proc.registry.last_arrival_us[: len(due)])
    assert sorted((due - last).tolist()) == [30 * S, 900 * S]
    clock.advance(30)
    [fast_raise] = alarm_events(proc.tick())
    assert fast_raise.data.device == "fast"
    assert fast_raise.data.detail.cadence_s == 1.0
    assert fast_raise.data.detail.silence_s == 30.0
    assert "at least 30s" in fast_raise.data.message
    clock.advance(900)
    [slow_raise] = alarm_events(proc.tick())
    assert slow_raise.data.device == "slow"
    assert slow_raise.data.detail.cadence_s == 300.0


def test_fixed_silence_still_applies_to_every_device():
    clock = FakeClock(1_000_000 * S)
    proc = processor(clock, rules=parse_rules({"defaults": {"deadman": "5m"}}))
    events = _minutes(proc, clock, "slow", 300, 3)
    assert [e.data.rule for e in events if e.type.endswith("raised.v1")] == ["deadman"] * 3


def test_cadence_survives_a_restart_with_the_snapshot():
    clock = FakeClock(1_000_000 * S)
    proc = processor(clock, rules=default_rules())
    _minutes(proc, clock, "slow", 300, 6)
    state = proc.snapshot()
    restored = processor(clock, rules=default_rules(), state=state)
    t = datetime.fromtimestamp(clock.t / S, UTC)
    send(restored, [telemetry(99, t, 20.0, device="slow")])
    clock.advance(600)  # 2 intervals: still within 3 x 300 s
    assert alarm_events(restored.tick()) == []
    clock.advance(300)
    assert [e.data.rule for e in alarm_events(restored.tick())] == ["deadman"]


def test_a_held_deadman_alarm_keeps_watching_and_folds_new_silences():
    rules = parse_rules(
        {"rules": [{"id": "quiet", "kind": "deadman", "silence": "10s", "max_raises": 1}]}
    )
    clock = FakeClock(1_000_000 * S)
    proc = processor(clock, rules=rules)
    events = []
    seq = iter(range(1000))
    for _ in range(3):  # three silences of 20 s, each ended by a message
        t = datetime.fromtimestamp(clock.t / S, UTC)
        events += alarm_events(send(proc, [telemetry(next(seq), t, 1.0)]))
        clock.advance(20)
        events += alarm_events(proc.tick())
    t = datetime.fromtimestamp(clock.t / S, UTC)
    events += alarm_events(send(proc, [telemetry(next(seq), t, 1.0)]))
    types = [e.type.split(".")[-2] for e in events]
    # The second silence is announced; the third, within a minute of it, only counted.
    assert types == ["raised", "updated"]
    [machine] = [s.machine for s in proc.device_rules.detectors[0].slots.values()]
    assert machine.folded == 2
