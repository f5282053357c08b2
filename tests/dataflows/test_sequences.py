"""Sequences: outbox ids, resets that are new data, gaps, and duplicates that stay duplicates."""

from datetime import UTC, datetime, timedelta

from dataflows.eventclock import FakeClock, to_us
from dataflows.observer import CountingObserver
from tests.dataflows.shard_kit import processor, readings, send, telemetry

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _proc(obs: CountingObserver) -> tuple[FakeClock, object]:
    clock = FakeClock(to_us(T0) + 60_000_000)
    return clock, processor(clock, observer=obs)


def test_a_recreated_outbox_with_an_id_is_new_data() -> None:
    obs = CountingObserver()
    _, proc = _proc(obs)
    send(proc, [telemetry(i, _at(i), outbox="a") for i in range(5)])
    # The device's store was wiped: a new outbox id, sequences from 0 again, and
    # readings at the same event times (a re-run): all kept, none a duplicate.
    again = send(proc, [telemetry(i, _at(i), value=2.0, outbox="b") for i in range(5)])
    assert len(readings(again)) == 5
    assert obs.counts["duplicates"] == 0
    assert obs.counts["sequence_resets:s/d"] == 1


def test_redeliveries_of_the_old_outbox_stay_duplicates_after_a_new_one() -> None:
    obs = CountingObserver()
    _, proc = _proc(obs)
    send(proc, [telemetry(i, _at(i), outbox="a") for i in range(3)])
    send(proc, [telemetry(0, _at(10), outbox="b")])
    late_copy = send(proc, [telemetry(1, _at(1), outbox="a")])
    assert readings(late_copy) == []
    assert obs.counts["duplicates"] == 1
    assert obs.counts["sequence_resets"] == 1


def test_a_sequence_back_at_zero_with_newer_readings_is_a_reset_not_a_duplicate() -> None:
    obs = CountingObserver()
    _, proc = _proc(obs)
    send(proc, [telemetry(i, _at(i)) for i in range(10)])
    # An agent without outbox ids lost its store: sequence 0 again, readings newer.
    out = send(proc, [telemetry(0, _at(20)), telemetry(1, _at(21))])
    assert len(readings(out)) == 2
    assert obs.counts["duplicates"] == 0
    assert obs.counts["sequence_resets:s/d"] == 1
    # After the reset, dedupe works on the new numbering.
    again = send(proc, [telemetry(1, _at(21))])
    assert readings(again) == []
    assert obs.counts["duplicates"] == 1


def test_a_true_redelivery_is_still_a_duplicate() -> None:
    obs = CountingObserver()
    _, proc = _proc(obs)
    send(proc, [telemetry(i, _at(i)) for i in range(10)])
    again = send(proc, [telemetry(3, _at(3)), telemetry(9, _at(9))])
    assert readings(again) == []
    assert obs.counts["duplicates"] == 2
    assert obs.counts["sequence_resets"] == 0


def test_gaps_are_counted_per_device_and_a_backlog_still_fills_them() -> None:
    obs = CountingObserver()
    _, proc = _proc(obs)
    send(proc, [telemetry(0, _at(0)), telemetry(1, _at(1)), telemetry(5, _at(5))])
    send(proc, [telemetry(6, _at(6), device="e"), telemetry(9, _at(9), device="e")])
    assert obs.counts["sequence_gaps:s/d"] == 3
    assert obs.counts["sequence_gaps:s/e"] == 2
    # The missing messages arrive later (an edge backlog): stored, not duplicates.
    filled = send(proc, [telemetry(i, _at(i)) for i in (2, 3, 4)])
    assert len(readings(filled)) == 3
    assert obs.counts["sequence_gaps"] == 5
    assert obs.counts["duplicates"] == 0


def test_outbox_state_survives_a_snapshot() -> None:
    obs = CountingObserver()
    clock, proc = _proc(obs)
    send(proc, [telemetry(i, _at(i), outbox="a") for i in range(3)])
    send(proc, [telemetry(0, _at(10), outbox="b")])
    restored = processor(clock, observer=obs, state=proc.snapshot())
    assert readings(send(restored, [telemetry(0, _at(10), outbox="b")])) == []
    assert readings(send(restored, [telemetry(2, _at(2), outbox="a")])) == []
    assert len(readings(send(restored, [telemetry(1, _at(11), outbox="b")]))) == 1


def _capped(obs: CountingObserver, **caps: int) -> object:
    from dataflows.config import StreamConfig
    from dataflows.eventclock import FakeClock
    from dataflows.registry import Caps
    from dataflows.rules import StaticRules
    from dataflows.shard import ShardProcessor
    from tests.dataflows.shard_kit import NO_RULES, SCHEME

    config = StreamConfig.from_strings(("10s",), 5, shards=1, caps=Caps(**caps))
    return ShardProcessor(
        topics=SCHEME,
        config=config,
        rules=StaticRules(NO_RULES),
        clock=FakeClock(to_us(T0) + 60_000_000),
        observer=obs,
    )


def test_devices_beyond_the_cap_become_cardinality_dead_letters_with_their_bytes() -> None:
    obs = CountingObserver()
    proc = _capped(obs, devices=2)
    msgs = [telemetry(0, _at(0), device=f"d{i}") for i in range(4)]
    out = send(proc, msgs)
    assert len(readings(out)) == 2
    assert [d.data.reason.value for d in out.deadletters] == ["cardinality", "cardinality"]
    assert [d.data.payload for d in out.deadletters] == [m[1] for m in msgs[2:]]
    # Known devices keep flowing.
    assert len(readings(send(proc, [telemetry(1, _at(1), device="d0")]))) == 1


def test_series_beyond_the_caps_become_dead_letters() -> None:
    obs = CountingObserver()
    proc = _capped(obs, series_per_device=2)
    out = send(proc, [telemetry(i, _at(i), sensor=f"s{i}") for i in range(3)])
    assert len(readings(out)) == 2
    assert [d.data.reason.value for d in out.deadletters] == ["cardinality"]
    assert "max_series_per_device" in out.deadletters[0].data.error
    total = _capped(obs, series=3)
    out = send(total, [telemetry(0, _at(0), sensor=f"s{i}", device=f"d{i}") for i in range(5)])
    assert len(readings(out)) == 3
    assert len(out.deadletters) == 2
