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


def test_severity_escalation_and_deescalation_update():
    m = machine()
    m.update(0, ON)
    [up] = m.update(S, Signal(True, 45.0, 40.0, "45 above 40", Severity.CRITICAL))
    assert isinstance(up, AlarmUpdatedEvent)
    assert up.data.severity is Severity.CRITICAL
    assert m.update(2 * S, Signal(True, 46.0, 40.0, "", Severity.CRITICAL)) == []
    [down] = m.update(3 * S, ON)
    assert down.data.severity is Severity.MAJOR


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
