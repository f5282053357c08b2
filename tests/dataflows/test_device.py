from datetime import UTC, datetime, timedelta

from contract import Reading, TelemetryEvent
from dataflows.device import DeviceProcessor, FakeClock, LateReading, StreamConfig, to_us
from dataflows.ingest import Accepted
from dataflows.observer import CountingObserver
from dataflows.windows import Aggregate

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
S = 1_000_000


def _event(seq: int, at: datetime, value: float = 1.0, metric: str = "temp") -> Accepted:
    event = TelemetryEvent.create(
        site="s",
        device="d",
        sequence=seq,
        readings=[Reading(sensor="env", metric=metric, value=value, time=at)],
    )
    return Accepted(event, at)


def _proc(
    clock: FakeClock, lateness_s: float = 5, windows=("10s",)
) -> tuple[DeviceProcessor, CountingObserver]:  # type: ignore[no-untyped-def]
    observer = CountingObserver()
    config = StreamConfig.from_strings(windows, lateness_s)
    return DeviceProcessor("s", "d", config, clock=clock, observer=observer), observer


def _aggs(out: list) -> list[Aggregate]:  # type: ignore[type-arg]
    return [o for o in out if isinstance(o, Aggregate)]


def test_duplicates_are_dropped_and_counted() -> None:
    clock = FakeClock(to_us(T0))
    proc, obs = _proc(clock)
    first = proc.process([_event(1, T0), _event(2, T0 + timedelta(seconds=1))])
    again = proc.process([_event(1, T0), _event(2, T0 + timedelta(seconds=1))])
    assert sum(isinstance(o, Accepted) for o in first) == 2
    assert again == []
    assert obs.counts["duplicates"] == 2


def test_windows_close_as_event_time_passes() -> None:
    clock = FakeClock(to_us(T0))
    proc, _ = _proc(clock, lateness_s=2)
    out = []
    for i in range(25):
        clock.t = to_us(T0) + i * S
        out += proc.process([_event(i, T0 + timedelta(seconds=i), value=float(i))])
    aggs = _aggs(out)
    # Windows [0,10) and [10,20) closed once the watermark (24 - 2) passed their ends.
    assert [(a.start_us - to_us(T0)) // S for a in aggs] == [0, 10]
    assert [a.count for a in aggs] == [10, 10]
    assert aggs[1].mean == 14.5


def test_windows_of_a_quiet_fleet_close_by_wall_clock() -> None:
    clock = FakeClock(to_us(T0))
    proc, _ = _proc(clock, lateness_s=5)  # quiet period defaults to the lateness
    proc.process([_event(0, T0 + timedelta(seconds=3))])
    # Window [0,10) ends at T0+10. The fleet clock (capped at the wall clock, T0) moves
    # on by itself after 5 s of silence; the window closes once it passes 10 + 5 + 5.
    closed_at = None
    for step in range(1, 40):
        clock.t = to_us(T0) + step * S
        wake = proc.next_wake_us()
        assert wake is not None
        assert wake > clock.t
        if _aggs(proc.tick()):
            closed_at = step
            break
    assert closed_at == 22
    assert proc.next_wake_us() is None


def test_a_quiet_device_in_a_busy_fleet_closes_its_windows() -> None:
    clock = FakeClock(to_us(T0))
    config = StreamConfig.from_strings(("10s",), 2)
    quiet = DeviceProcessor(None, None, config, clock=clock)
    busy = DeviceProcessor(None, None, config, clock=clock, fleet=quiet.fleet)
    quiet.process([_event(0, T0 + timedelta(seconds=1))])
    for i in range(2, 40):
        clock.t = to_us(T0) + i * S
        busy.process([_event(i, T0 + timedelta(seconds=i))])
        if _aggs(quiet.tick()):
            break
    # The fleet's event time passed 10 + L + Q = 14 s.
    assert clock.t == to_us(T0) + 14 * S


def test_a_backlog_drained_slower_than_real_time_is_not_late() -> None:
    clock = FakeClock(to_us(T0))
    config = StreamConfig.from_strings(("10s",), 2)
    obs = CountingObserver()
    devices = [DeviceProcessor(None, None, config, clock=clock, observer=obs) for _ in range(50)]
    for d in devices[1:]:
        d.fleet = devices[0].fleet
    old = T0 - timedelta(hours=1)  # a broker queue an hour deep, drained at 1/10 speed
    out = []
    for i in range(60):
        for n, d in enumerate(devices):
            clock.advance(0.2)  # 10 s of wall clock per 1 s of event time
            event = TelemetryEvent.create(
                site="s",
                device=f"d{n}",
                sequence=i,
                readings=[
                    Reading(sensor="x", metric="m", value=1.0, time=old + timedelta(seconds=i))
                ],
            )
            out += d.process([Accepted(event, T0)])
    assert obs.counts["late"] == 0
    assert len(_aggs(out)) >= 50 * 4  # windows close as the backlog's event time moves on


def test_late_reading_goes_to_late_output_and_never_reopens_a_window() -> None:
    clock = FakeClock(to_us(T0))
    proc, obs = _proc(clock, lateness_s=2)
    out = []
    for i in range(20):
        clock.t = to_us(T0) + i * S
        out += proc.process([_event(i, T0 + timedelta(seconds=i), value=1.0)])
    closed_before = _aggs(out)
    assert [(a.start_us - to_us(T0)) // S for a in closed_before] == [0]
    straggler = proc.process([_event(100, T0 + timedelta(seconds=4), value=999.0)])
    late = [o for o in straggler if isinstance(o, LateReading)]
    assert len(late) == 1
    assert late[0].value == 999.0
    assert obs.counts["late"] == 1
    # Its raw telemetry is still passed on for storage...
    assert any(isinstance(o, Accepted) for o in straggler)
    # ...but no window [0,10) is ever emitted again.
    clock.t += 100 * S
    rest = _aggs(proc.tick())
    assert all(a.start_us != to_us(T0) for a in rest)
    assert all(a.max < 999.0 for a in rest)


def test_out_of_order_within_lateness_is_on_time() -> None:
    clock = FakeClock(to_us(T0))
    proc, obs = _proc(clock, lateness_s=5)
    proc.process([_event(1, T0 + timedelta(seconds=8))])
    out = proc.process([_event(0, T0 + timedelta(seconds=4))])
    assert not any(isinstance(o, LateReading) for o in out)
    clock.t += 30 * S
    aggs = _aggs(proc.tick())
    assert [a.count for a in aggs] == [2]
    assert (aggs[0].first, aggs[0].last) == (1.0, 1.0)
    assert obs.counts["late"] == 0


def test_faults_are_stored_but_not_aggregated() -> None:
    clock = FakeClock(to_us(T0))
    proc, _ = _proc(clock)
    event = TelemetryEvent.create(
        site="s",
        device="d",
        sequence=0,
        readings=[Reading(sensor="w1", metric="temp", fault="crc", time=T0)],
    )
    out = proc.process([Accepted(event, T0)])
    assert out == [Accepted(event, T0)]
    assert proc.next_wake_us() is None


def test_restart_from_snapshot_keeps_dedupe_and_windows_and_ignores_downtime() -> None:
    clock = FakeClock(to_us(T0))
    proc, _ = _proc(clock, lateness_s=2)
    for i in range(5):
        clock.t = to_us(T0) + i * S
        proc.process([_event(i, T0 + timedelta(seconds=i), value=float(i))])
    state = proc.snapshot()
    assert state["max_event"] == to_us(T0) + 4 * S
    # The gateway is down for a minute; then the broker re-delivers seq 4 and 5.
    clock.t += 60 * S
    config = StreamConfig.from_strings(("10s",), 2)
    back = DeviceProcessor("s", "d", config, clock=clock, state=state)
    out = back.process(
        [_event(4, T0 + timedelta(seconds=4), 4.0), _event(5, T0 + timedelta(seconds=5), 5.0)]
    )
    assert [o.event.data.sequence for o in out if isinstance(o, Accepted)] == [5]
    assert not any(isinstance(o, LateReading) for o in out)
    clock.t += 60 * S
    aggs = _aggs(back.tick())
    assert [(a.count, a.mean) for a in aggs] == [(6, 2.5)]


def test_devices_batched_one_after_another_are_not_late() -> None:
    # Bytewax hands a device all its queued events at once, device after device.
    clock = FakeClock(to_us(T0) + 300 * S)
    config = StreamConfig.from_strings(("10s",), 2)
    obs = CountingObserver()
    first = DeviceProcessor(None, None, config, clock=clock, observer=obs)
    second = DeviceProcessor(None, None, config, clock=clock, fleet=first.fleet, observer=obs)
    for proc, name in ((first, "a"), (second, "b")):
        batch = [
            Accepted(
                TelemetryEvent.create(
                    site="s",
                    device=name,
                    sequence=i,
                    readings=[
                        Reading(sensor="x", metric="m", value=1.0, time=T0 + timedelta(seconds=i))
                    ],
                ),
                T0,
            )
            for i in range(60)
        ]
        proc.process(batch)
    assert obs.counts["late"] == 0
