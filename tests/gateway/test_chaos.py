"""The pieces of ``sensorgate chaos`` that decide: the schedule and the accounting.

The run itself depends on timing (outages, restarts, a shared machine), so it is a
command that prints figures, not a test; what it concludes from its figures is tested here.
"""

from __future__ import annotations

import pytest

from gateway.chaos.accounting import DeviceTally, totals
from gateway.chaos.cli import format_table
from gateway.chaos.schedule import Action, build_schedule


def test_a_ten_minute_schedule_breaks_everything_once_and_the_gateway_twice() -> None:
    events = build_schedule(600)
    assert [e.action for e in events] == [
        Action.KILL_GATEWAY,
        Action.STOP_INFLUXD,
        Action.KILL_EDGE,
        Action.STOP_BROKER,
        Action.KILL_GATEWAY,
    ]
    assert [e.at_s for e in events] == sorted(e.at_s for e in events)
    influx = next(e for e in events if e.action is Action.STOP_INFLUXD)
    broker = next(e for e in events if e.action is Action.STOP_BROKER)
    assert (influx.down_s, broker.down_s) == (60, 20)
    assert influx.end_s + 10 <= broker.at_s
    assert max(e.end_s for e in events) + 10 <= 600


def test_a_compressed_schedule_keeps_the_order_with_shorter_outages() -> None:
    events = build_schedule(120, influx_down_s=20, broker_down_s=10)
    assert [e.action for e in events] == [e.action for e in build_schedule(600)]
    assert max(e.end_s for e in events) <= 110


@pytest.mark.parametrize("minutes", [1, 2, 2.5])
def test_a_run_too_short_for_its_outages_is_refused(minutes: float) -> None:
    with pytest.raises(ValueError, match=r"cannot hold|too early"):
        build_schedule(minutes * 60)


def _tally(**kw: object) -> DeviceTally:
    base: dict[str, object] = {
        "device": "dev-0",
        "events": 100,
        "dropped": 0,
        "pending": 0,
        "last_event_readings": 20,
        "stored": 99 * 50 + 20,
        "stored_events": 100,
        "windowed": 99 * 50 + 20 - 7,
        "late": 7,
    }
    base.update(kw)
    return DeviceTally(**base)  # type: ignore[arg-type]


def test_everything_stored_once_is_no_loss_and_no_duplicate() -> None:
    t = _tally()
    assert t.published == 4_970
    assert (t.lost, t.lost_events, t.duplicates, t.unfolded) == (0, 0, 0, 0)


def test_missing_readings_are_lost_and_missing_events_are_named() -> None:
    t = _tally(stored=4_970 - 50, stored_events=99, windowed=4_970 - 57)
    assert t.lost == 50
    assert t.lost_events == 1


def test_a_reading_folded_twice_shows_in_the_windows_not_in_the_raw_points() -> None:
    t = _tally(windowed=4_970 - 7 + 50)  # one event's readings folded again after a crash
    assert t.duplicates == 50
    assert t.lost == 0


def test_an_unstored_last_event_counts_as_a_full_one_and_pending_events_are_not_lost() -> None:
    t = _tally(last_event_readings=None, stored=99 * 50, stored_events=99, windowed=99 * 50 - 7)
    assert t.published == 5_000
    assert t.lost == 50
    waiting = _tally(last_event_readings=None, stored=99 * 50, stored_events=99, pending=1)
    assert waiting.lost == 0
    assert waiting.lost_events == 0


def test_open_windows_at_the_end_are_reported_not_counted_as_duplicates_or_loss() -> None:
    t = _tally(windowed=4_000)
    assert t.unfolded == 4_970 - 4_000 - 7
    assert (t.lost, t.duplicates) == (0, 0)


def test_totals_and_the_table_add_devices_up() -> None:
    lossy = _tally(device="dev-1", stored=4_970 - 50, stored_events=99, windowed=4_970 - 57)
    devices = [_tally(), lossy]
    sums = totals(devices)
    assert sums["published"] == 9_940
    assert sums["lost"] == 50
    report = {
        "devices_detail": [d.as_dict() for d in devices],
        "totals": sums,
        "deadletters": {},
        "gateway_restarts": 2,
        "edge_restarts": 1,
        "faults": [{"action": "kill_gateway", "from_s": 90.0, "to_s": 95.2}],
        "rss_mb_peak": {"gateway": 250.0},
        "wall_s": 700.0,
        "ok": False,
    }
    text = format_table(report)
    assert "| **all** | 200 | 9,940 | 9,890 | **50** | **0** |" in text
    assert "FAIL: lost 50 readings" in text
    assert "kill_gateway 90-95 s" in text
