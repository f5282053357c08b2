"""The columnar snapshot formats: registry, device detectors, cadence, quiet alarm machines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from dataflows.alarm_types import AlarmKey, AlarmPolicy, Cause
from dataflows.alarms import AlarmMachine
from dataflows.cadence import CADENCE_INTERVALS, CadenceArrays
from dataflows.detectors.base import Signal
from dataflows.device_slots_state import device_docs, slot_columns
from dataflows.eventclock import FakeClock, to_us
from dataflows.registry import Registry
from dataflows.rules import parse_rules
from tests.dataflows.shard_kit import processor, readings, send, telemetry

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
S = 1_000_000


def _registry() -> Registry:
    reg = Registry(dedupe_intervals=4)
    a, b = reg.device("s", "a"), reg.device("s", "b")
    reg.device("s", "never-spoke")
    for seq in (0, 1, 2, 5, 9):
        reg.seen[a].add(seq)
    reg.seen_of(b, "box-1")[0].add(7)
    reg.seen_of(b, "box-2")[0].add(0)  # box-1 becomes an old outbox
    reg.max_event_us[a], reg.last_wm_us[a] = 5 * S, 3 * S
    reg.high_seq[a], reg.newest_seen_us[a] = 9, 6 * S
    reg.add_series(a, "env", "temp")
    reg.add_series(b, "env", "rh")
    return reg


def _state(reg: Registry) -> list[object]:
    return [
        reg.sites,
        reg.devices,
        [(s.starts, s.ends) for s in reg.seen],
        reg.outbox,
        [
            None if o is None else {k: (v.starts, v.ends) for k, v in o.items()}
            for o in reg.old_outboxes
        ],
        reg.high_seq,
        reg.newest_seen_us,
        reg.max_event_us,
        reg.last_wm_us,
        reg.last_arrival_us,
        list(reg.iter_series()),
    ]


def test_the_registry_columns_restore_what_the_list_per_device_restored() -> None:
    reg = _registry()
    columns = reg.snapshot()
    assert isinstance(columns["columns"]["seen_starts"], np.ndarray)
    rows = {  # the format before the columns, written out
        "devices": [
            [
                reg.sites[i],
                reg.devices[i],
                reg.seen[i].snapshot(),
                reg.max_event_us[i],
                reg.last_wm_us[i],
                reg.outbox[i],
                reg.high_seq[i],
                reg.newest_seen_us[i],
                None
                if (o := reg.old_outboxes[i]) is None
                else {k: v.snapshot() for k, v in o.items()},
            ]
            for i in range(reg.device_count)
        ],
        "series": columns["series"],
    }
    from_columns = Registry.restore(columns, dedupe_intervals=4, now_us=99 * S)
    from_rows = Registry.restore(rows, dedupe_intervals=4, now_us=99 * S)
    assert _state(from_columns) == _state(from_rows)
    assert _state(from_columns)[:9] == _state(reg)[:9]  # arrivals restart at now
    assert 9 in from_columns.seen[0]
    assert 3 not in from_columns.seen[0]
    assert from_columns.seen_of(1, "box-1")[0].last() == 7


def test_device_slot_columns_give_back_every_detector_s_own_snapshot() -> None:
    clock = FakeClock(to_us(T0))
    rules = parse_rules(
        {
            "defaults": {"deadman": "20s", "offline": True},
            "rules": [{"id": "hot", "kind": "threshold", "metric": "temp", "above": 50.0}],
        }
    )
    proc = processor(clock, rules=rules)
    for i in range(3):
        clock.t = to_us(T0) + i * S
        send(proc, [telemetry(i, T0 + timedelta(seconds=i), device=d) for d in ("a", "b", "c")])
    clock.t += 60 * S
    proc.tick()  # every device's deadman raises: machines that are not pristine
    detectors = proc.device_rules.detectors
    assert len(detectors) == 3
    assert any(not s.machine.pristine for d in detectors.values() for s in d.slots.values())
    columns = slot_columns(detectors)
    assert device_docs(columns) == {dev: det.snapshot() for dev, det in detectors.items()}
    restored = processor(clock, rules=rules, state=proc.snapshot())
    again = restored.device_rules.detectors
    assert {dev: det.snapshot() for dev, det in again.items()} == {
        dev: det.snapshot() for dev, det in detectors.items()
    }
    # An active deadman alarm ends when the device speaks again after the restart.
    out = send(restored, [telemetry(3, T0 + timedelta(seconds=63), device="a")])
    assert len(readings(out)) == 1
    assert [e.type.split(".")[-2] for e in out.alarms if hasattr(e, "type")] == ["cleared"]


def test_a_pristine_machine_snapshots_its_last_time_only_and_restores_the_same() -> None:
    policy = AlarmPolicy()
    machine = AlarmMachine(AlarmKey("s", "d", "x", "m", "r"), policy)
    quiet = Signal(False, 1.0, 2.0, "")
    machine.update(5, quiet)
    assert machine.pristine
    assert machine.snapshot() == {"last": 5}
    again = AlarmMachine(AlarmKey("s", "d", "x", "m", "r"), policy)
    again.restore(machine.snapshot())
    assert again.pristine
    assert again.last_us == 5
    raised = machine.update(6, Signal(True, 3.0, 2.0, "hot"), Cause())
    assert [e.type.split(".")[-2] for e in raised] == ["raised"]
    assert not machine.pristine
    full = machine.snapshot()
    assert full["alarm_id"] == machine.alarm_id
    assert full["raises"] == [6]
    again.restore(full)
    assert again.snapshot() == full


def test_cadence_arrays_restore_like_one_device_at_a_time() -> None:
    arrays = CadenceArrays()
    rng = np.random.default_rng(7)
    t = np.zeros(3, np.int64)
    for _ in range(CADENCE_INTERVALS + 5):  # device 0's ring wraps; 1 fills part; 2 none
        t += rng.integers(1, 100, 3) * S
        arrays.observe(np.asarray([0, 1]), t[:2], t[:2])
    by_arrays, one_by_one = CadenceArrays(), CadenceArrays()
    by_arrays.restore(arrays.snapshot())
    for dev in range(arrays.size):
        one_by_one.restore_of(dev, arrays.snapshot_of(dev))
    one_by_one.grow(arrays.size)
    for step in range(CADENCE_INTERVALS + 3):  # the same arrivals to both: same medians
        now = np.full(3, 10**6 * S + step * 13 * S, np.int64) + np.arange(3) * S
        for c in (by_arrays, one_by_one):
            c.observe(np.arange(3), now, now)
        np.testing.assert_array_equal(by_arrays.median_us, one_by_one.median_us)
        np.testing.assert_array_equal(by_arrays.count, one_by_one.count)
        assert [by_arrays.snapshot_of(d) for d in range(3)] == [
            one_by_one.snapshot_of(d) for d in range(3)
        ]
    assert int(by_arrays.count[0]) == CADENCE_INTERVALS


def test_device_rules_of_a_snapshot_from_before_the_columns_still_restore() -> None:
    clock = FakeClock(to_us(T0))
    rules = parse_rules({"defaults": {"deadman": "auto", "offline": True}})
    proc = processor(clock, rules=rules)
    for i in range(6):  # five intervals of 10 s learnt per device
        clock.t = to_us(T0) + i * 10 * S
        send(proc, [telemetry(i, T0 + timedelta(seconds=10 * i), device=d) for d in ("a", "b")])
    state = proc.snapshot()
    dr = proc.device_rules
    # The format before the columns: device -> its detector's document and its cadence.
    state["detectors"] = {
        dev: {**det.snapshot(), "cadence": dr.cadence.snapshot_of(dev)}
        for dev, det in dr.detectors.items()
    }
    old = processor(clock, rules=rules, state=state).device_rules
    new = processor(clock, rules=rules, state=proc.snapshot()).device_rules
    for restored in (old, new):
        assert {d: det.snapshot() for d, det in restored.detectors.items()} == {
            d: det.snapshot() for d, det in dr.detectors.items()
        }
        np.testing.assert_array_equal(restored.cadence.median_us, dr.cadence.median_us)
        assert int(restored.cadence.count[0]) == 5
