from datetime import UTC, datetime

from contract.alarms import (
    AlarmAcknowledgedEvent,
    AlarmClearedEvent,
    AlarmRaisedEvent,
    AlarmState,
    AlarmUpdatedEvent,
    Severity,
    alarm_id_for,
    decode_alarm,
    encode_alarm,
)
from dataflows.alarms import AlarmKey, AlarmMachine, AlarmPolicy, Cause
from dataflows.detectors import Signal

S = 1_000_000
KEY = AlarmKey("site", "dev", "env", "temperature", "hot")
ON = Signal(True, 31.0, 30.0, "31 above 30")
OFF = Signal(False, 20.0, 30.0)


def machine(**kw):
    return AlarmMachine(KEY, AlarmPolicy(severity=Severity.MAJOR, kind="threshold", **kw))


def test_raise_and_clear_immediately():
    m = machine()
    [raised] = m.update(0, ON, Cause("evt-1", "env/temperature", None))
    assert isinstance(raised, AlarmRaisedEvent)
    d = raised.data
    assert d.alarm_id == alarm_id_for("site", "dev", "env/temperature", "hot", 0)
    assert (d.severity, d.state, d.value, d.threshold) == (
        Severity.MAJOR,
        AlarmState.ACTIVE,
        31.0,
        30.0,
    )
    assert d.cause_event_id == "evt-1"
    assert d.cause_reading == "env/temperature"
    assert m.update(S, ON) == []  # at most one active alarm per key
    [cleared] = m.update(2 * S, OFF)
    assert isinstance(cleared, AlarmClearedEvent)
    assert cleared.data.alarm_id == d.alarm_id
    assert cleared.data.state is AlarmState.CLEARED
    assert not m.active


def test_for_duration_boundary_and_reset():
    m = machine(for_us=10 * S)
    assert m.update(0, ON) == []
    assert m.update(9 * S, ON) == []
    assert m.update(9 * S + 500_000, OFF) == []  # went away before 10 s: pending resets
    assert m.update(10 * S, ON) == []
    [raised] = m.update(20 * S, ON)  # exactly 10 s held
    assert raised.data.raised_at == datetime.fromtimestamp(20, UTC)


def test_clear_for_and_min_duration():
    m = machine(clear_for_us=5 * S, min_duration_us=60 * S)
    m.update(0, ON)
    assert m.update(10 * S, OFF) == []
    assert m.update(14 * S, ON) == []  # back on: the clear countdown restarts
    assert m.update(20 * S, OFF) == []
    assert m.update(25 * S, OFF) == []  # off for 5 s but not yet 60 s old
    [cleared] = m.update(60 * S, OFF)
    assert isinstance(cleared, AlarmClearedEvent)


def test_severity_escalates_at_once_and_never_steps_down_while_active():
    m = machine()
    m.update(0, ON)
    [up] = m.update(S, Signal(True, 45.0, 40.0, "45 above 40", Severity.CRITICAL))
    assert isinstance(up, AlarmUpdatedEvent)
    assert up.data.severity is Severity.CRITICAL
    assert m.update(2 * S, Signal(True, 46.0, 40.0, "", Severity.CRITICAL)) == []
    # A condition wavering between two levels sends no update per reading.
    assert m.update(3 * S, ON) == []
    assert m.update(4 * S, Signal(True, 45.0, 40.0, "", Severity.CRITICAL)) == []
    assert m.severity is Severity.CRITICAL


def test_flapping_input_is_held_as_one_alarm():
    m = machine(flap_count=3, flap_window_us=100 * S)
    events = []
    for i in range(20):  # on/off every second
        events += m.update(i * S, ON if i % 2 == 0 else OFF)
    raised = [e for e in events if isinstance(e, AlarmRaisedEvent)]
    cleared = [e for e in events if isinstance(e, AlarmClearedEvent)]
    assert len(raised) == 3
    assert len(cleared) == 2
    assert raised[-1].data.flapping
    assert "flapping" in raised[-1].data.message
    assert m.update(110 * S, OFF) == []  # off since 19 s: not yet a whole flap window
    [cleared] = m.update(119 * S, OFF)
    assert isinstance(cleared, AlarmClearedEvent)
    assert not m.flapping


def test_out_of_order_update_is_ignored():
    m = machine()
    m.update(10 * S, ON)
    assert m.update(5 * S, OFF) == []  # older than what was taken
    assert m.active
    assert m.last_us == 10 * S


def test_acknowledge_kept_until_clear():
    m = machine()
    assert m.acknowledge("ann", datetime(2026, 1, 1, tzinfo=UTC)) == []  # nothing active
    m.update(0, ON)
    [ack] = m.acknowledge("ann", datetime(2026, 1, 1, tzinfo=UTC))
    assert isinstance(ack, AlarmAcknowledgedEvent)
    assert ack.data.acknowledged_by == "ann"
    assert ack.data.state is AlarmState.ACKNOWLEDGED
    [up] = m.update(S, Signal(True, 50.0, 40.0, "", Severity.CRITICAL))
    assert up.data.acknowledged_by == "ann"
    assert up.data.state is AlarmState.ACKNOWLEDGED
    [cleared] = m.update(2 * S, OFF)
    assert cleared.data.acknowledged_by == "ann"
    [raised] = m.update(3 * S, ON)
    assert raised.data.acknowledged_by is None  # a new alarm starts unacknowledged


def test_restart_with_snapshot_neither_raises_twice_nor_loses_a_clear():
    m = machine()
    [raised] = m.update(0, ON)
    state = m.snapshot()
    again = machine()
    again.restore(state)
    assert again.update(0, ON) == []  # the re-delivered reading does not raise twice
    assert again.update(S, ON) == []
    [cleared] = again.update(2 * S, OFF)
    assert cleared.data.alarm_id == raised.data.alarm_id


def test_signal_none_changes_nothing_and_force_clear():
    m = machine()
    assert m.update(0, None) == []
    m.update(1, ON)
    [cleared] = m.force_clear(0, "rule removed")
    assert cleared.data.message == "rule removed"
    assert m.force_clear(5, "again") == []


def test_alarm_event_round_trip_and_deterministic_ids():
    a = machine().update(0, ON)[0]
    b = machine().update(0, ON)[0]
    assert a.id == b.id
    assert a.data.alarm_id == b.data.alarm_id
    assert decode_alarm(encode_alarm(a)) == a
    assert a.type == "io.sensorgate.alarm.raised.v1"


def _episodes(m, starts_s, length_s=10):
    """An on/off episode per start (on for ``length_s``, then off); every event."""
    events = []
    for start in starts_s:
        events += m.update(start * S, ON)
        events += m.update((start + length_s) * S, OFF)
    return events


def test_rate_limit_holds_the_last_raise_and_folds_the_excess():
    m = machine(flap_count=0, max_raises=3, raise_window_us=3600 * S)
    events = _episodes(m, [0, 600, 1200, 1800, 2400, 3000])
    raised = [e for e in events if isinstance(e, AlarmRaisedEvent)]
    cleared = [e for e in events if isinstance(e, AlarmClearedEvent)]
    updated = [e for e in events if isinstance(e, AlarmUpdatedEvent)]
    assert len(raised) == 3  # at most 3 raises within the hour
    assert len(cleared) == 2  # the third is held
    last = raised[-1].data
    assert last.rate_limited is True
    assert "rate limited: 3 raises within 1 h" in last.message
    assert raised[0].data.rate_limited is None  # not limited: the field is left out
    # The three later episodes are one alarm, each announced with its count.
    assert [u.data.folded_raises for u in updated] == [1, 2, 3]
    assert {u.data.alarm_id for u in updated} == {last.alarm_id}
    assert all("folded into this alarm" in u.data.message for u in updated)
    assert m.active
    assert m.folded == 3
    # Held until the window frees (the first raise at 0 s leaves it at 3600 s).
    assert m.update(3599 * S, OFF) == []
    [clear] = m.update(3600 * S, OFF)
    assert isinstance(clear, AlarmClearedEvent)
    assert clear.data.folded_raises == 3
    assert "3 more occurrence(s) were folded" in clear.data.message
    # The window allows a raise again: a new alarm, itself the third within the hour.
    [again] = m.update(3700 * S, ON)
    assert isinstance(again, AlarmRaisedEvent)
    assert again.data.alarm_id != last.alarm_id


def test_at_most_max_raises_per_window_over_a_long_storm():
    m = machine(flap_count=0, max_raises=6)
    events = _episodes(m, range(0, 6 * 3600, 120), length_s=20)  # every 2 minutes, 6 h
    raises = sorted(
        int(e.data.event_time.timestamp()) for e in events if isinstance(e, AlarmRaisedEvent)
    )
    assert len(raises) < 6 * 6 + 1
    for i, t in enumerate(raises):  # any hour holds at most 6 raises
        assert sum(1 for u in raises[i:] if u < t + 3600) <= 6


def test_folded_announcements_are_coalesced_to_one_a_minute():
    m = machine(flap_count=0, max_raises=1)
    events = _episodes(m, range(0, 300, 4), length_s=2)  # chatter every 4 s for 5 min
    updated = [e for e in events if isinstance(e, AlarmUpdatedEvent)]
    assert len([e for e in events if isinstance(e, AlarmRaisedEvent)]) == 1
    assert 4 <= len(updated) <= 6  # one per minute, not one per occurrence
    assert m.folded == 74
    assert updated[-1].data.folded_raises < m.folded  # the clear will carry the rest


def test_flapping_alarm_counts_its_occurrences_and_zero_means_no_limit():
    m = machine(flap_count=2, flap_window_us=1000 * S, max_raises=0)
    events = _episodes(m, [0, 100, 200, 300])
    assert len([e for e in events if isinstance(e, AlarmRaisedEvent)]) == 2
    updated = [e for e in events if isinstance(e, AlarmUpdatedEvent)]
    assert updated[0].data.flapping
    assert "(flapping)" in updated[0].data.message
    assert m.folded == 2
    assert updated[0].data.rate_limited is None


def test_a_condition_back_within_clear_for_is_no_new_occurrence():
    m = machine(flap_count=0, max_raises=1, clear_for_us=30 * S)
    m.update(0, ON)
    assert m.rate_limited
    assert m.update(10 * S, OFF) == []
    assert m.update(20 * S, ON) == []  # back before clear_for: the same occurrence
    assert m.folded == 0
    m.update(30 * S, OFF)
    m.update(70 * S, OFF)  # off for 40 s: this occurrence is over
    assert m.rearmed
    [up] = m.update(80 * S, ON)
    assert up.data.folded_raises == 1


def test_explain_is_called_only_for_events_and_carried_by_the_alarm():
    from contract.alarms import AlarmDetail

    calls = []

    def explain():
        calls.append(1)
        return AlarmDetail(component="prediction_error", score=2.0, expected=20.0,
                           band_low=18.0, band_high=22.0, history_readings=500)  # fmt: skip

    m = machine()
    assert m.update(0, OFF, None, explain) == []
    [raised] = m.update(S, ON, None, explain)
    assert m.update(2 * S, ON, None, explain) == []
    assert len(calls) == 1
    assert raised.data.detail.component == "prediction_error"
    assert raised.data.detail.band_high == 22.0
    [ack] = m.acknowledge("ann", datetime(2026, 1, 1, tzinfo=UTC))
    assert ack.data.detail == raised.data.detail  # the alarm's explanation stays with it
    state = m.snapshot()
    again = machine()
    again.restore(state)
    [cleared] = again.update(3 * S, OFF, None, explain)
    assert cleared.data.detail is not None
    assert decode_alarm(encode_alarm(raised)) == raised


def test_snapshot_keeps_the_rate_limit_and_old_snapshots_load():
    m = machine(flap_count=0, max_raises=1)
    _episodes(m, [0, 100])
    state = m.snapshot()
    again = machine(flap_count=0, max_raises=1)
    again.restore(state)
    assert again.rate_limited
    assert again.folded == 1
    old = {k: v for k, v in state.items() if k in (
        "last", "pending", "alarm_id", "raised", "severity", "clear_since", "ack_by",
        "ack_at", "flapping", "raises")}  # fmt: skip
    older = machine()
    older.restore(old)
    assert older.active
    assert not older.rate_limited
    assert older.folded == 0


def test_a_replay_that_raises_on_a_later_reading_names_the_same_alarm():
    # The original run raises on the reading at 10 s. A crash loses everything after
    # the snapshot at 5 s; the replay sees the readings in another order (a redelivered
    # queue behind newer messages) and raises on 14 s, then ignores 10 s as older.
    m = machine()
    m.update(5 * S, OFF)
    snap = m.snapshot()
    [original] = m.update(10 * S, ON)
    replay = machine()
    replay.restore(snap)
    [again] = replay.update(14 * S, ON)
    assert replay.update(10 * S, ON) == []
    assert again.data.alarm_id == original.data.alarm_id
    assert again.data.raised_at != original.data.raised_at


def test_each_alarm_after_a_clear_has_a_new_id_and_the_anchor_survives_a_snapshot():
    m = machine()
    [first] = m.update(1 * S, ON)
    [cleared] = m.update(2 * S, OFF)
    assert isinstance(cleared, AlarmClearedEvent)
    restored = machine()
    restored.restore(m.snapshot())
    [second] = restored.update(3 * S, ON)
    [second_again] = m.update(3 * S, ON)
    assert second.data.alarm_id == second_again.data.alarm_id != first.data.alarm_id
    assert second.data.alarm_id == alarm_id_for("site", "dev", "env/temperature", "hot", 2 * S)


def test_a_snapshot_from_before_the_anchor_keeps_its_active_alarm_s_id():
    m = machine()
    [raised] = m.update(7 * S, ON)
    old = m.snapshot()
    del old["since"]  # written by a gateway that named alarms by their raise time
    restored = machine()
    restored.restore(old)
    [cleared] = restored.update(8 * S, OFF)
    assert cleared.data.alarm_id == raised.data.alarm_id
