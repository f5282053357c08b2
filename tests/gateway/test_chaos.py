"""The pieces of ``sensorgate chaos`` that decide: the schedule and the accounting.

The run itself depends on timing (outages, restarts, a shared machine), so it is a
command that prints figures, not a test; what it concludes from its figures is tested here,
and the drain of the outboxes it leaves, against the real mosquitto.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.chaos.accounting import DeviceTally, totals
from gateway.chaos.cli import format_table
from gateway.chaos.run import ChaosOptions, load_figures, schedule_for
from gateway.chaos.schedule import Action, build_schedule
from gateway.chaos.watch import dead_spans, spill_drains


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
    assert "FAIL: lost 50 readings, gateway crashes 0" in text
    assert "kill_gateway 90-95 s" in text


def test_no_faults_gives_an_empty_schedule_even_for_a_run_too_short_for_one() -> None:
    assert schedule_for(ChaosOptions(minutes=1, faults=False)) == []
    assert schedule_for(ChaosOptions(minutes=10)) == build_schedule(600)
    with pytest.raises(ValueError, match="cannot hold"):
        schedule_for(ChaosOptions(minutes=1))


def test_the_cli_passes_no_faults_through(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from gateway.chaos import cli, run

    seen: list[ChaosOptions] = []

    def fake(options: ChaosOptions, **_kw: object) -> dict[str, object]:
        seen.append(options)
        return {"ok": True}

    monkeypatch.setattr(run, "run_chaos", fake)
    monkeypatch.setattr(cli, "format_table", lambda _r: "")
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["chaos", "--no-faults", "--minutes", "1.5", "--rate", "20000"])
    assert args.func(args) == 0
    assert seen[0].faults is False
    assert (seen[0].minutes, seen[0].rate) == (1.5, 20_000.0)
    assert parser.parse_args(["chaos"]).no_faults is False


def test_load_figures_give_the_achieved_rate_and_the_backlog_left_at_the_end() -> None:
    load = load_figures(published=1_200_000, load_s=120.0, backlog_events=30, drain_s=12.34)
    assert load == {
        "load_s": 120.0,
        "achieved_rate": 10_000.0,
        "backlog_events_at_end": 30,
        "backlog_readings_at_end": 1_500,
        "drain_s": 12.3,
    }


def test_spill_drain_is_timed_from_the_end_of_each_influxd_outage() -> None:
    faults = [
        {"action": "kill_gateway", "from_s": 10.0, "to_s": 12.0},
        {"action": "stop_influxd", "from_s": 20.0, "to_s": 80.0},
    ]
    samples = [(18.0, 0.0), (40.0, 100_000.0), (80.0, 300_000.0), (90.0, 50.0), (96.0, 0.0)]
    assert spill_drains(samples, faults) == [
        {"influxd_down_s": [20.0, 80.0], "spill_peak_points": 300_000, "spill_empty_after_s": 16.0}
    ]
    assert spill_drains(samples[:4], faults)[0]["spill_empty_after_s"] is None


def test_the_table_shows_offered_and_achieved_rates_and_a_run_without_faults() -> None:
    devices = [_tally()]
    report = {
        "devices_detail": [d.as_dict() for d in devices],
        "totals": totals(devices),
        "deadletters": {},
        "gateway_restarts": 0,
        "edge_restarts": 0,
        "faults": [],
        "rss_mb_peak": {},
        "wall_s": 100.0,
        "rate": 20_000.0,
        "load": load_figures(4_970, 1.0, 2, 3.0),
        "spill_drain": [
            {"influxd_down_s": [1, 2], "spill_peak_points": 5_000, "spill_empty_after_s": 7.0}
        ],
        "ok": True,
    }
    text = format_table(report)
    assert "| faults | none |" in text
    assert "| 20,000 / 4,970 |" in text
    assert "| left in the outboxes when the load ended | 2 events (100 readings) |" in text
    assert "peak 5,000 points, empty 7 s after influxd was back" in text


class _FakeInflux:
    def __init__(self) -> None:
        self.queries: list[str] = []

    def _get(self, _path: str, **params: str) -> _FakeInflux:
        self.queries.append(params["q"])
        return self

    def json(self) -> dict[str, object]:
        return {"results": [{"series": [{"tags": {"reason": "oversize"}, "values": [[0, 3]]}]}]}


def test_dead_letters_are_counted_in_their_own_retention_policy(tmp_path: Path) -> None:
    # The chaos gateway runs with retention on (the default for InfluxDB 1.x), so
    # aggregates and dead letters live in their own policies; a bare FROM "deadletters"
    # reads the default policy and finds nothing, which once hid every dead letter and
    # every duplicate (the windows' counts read as 0).
    from gateway.chaos.counting import deadletters
    from gateway.chaos.roles import gateway_settings
    from gateway.influx.layout import StorageLayout

    layout = StorageLayout.of(gateway_settings(tmp_path, 1883, 8086, "").influx)
    assert layout.active
    assert layout.aggregates == '"aggregates"."aggregates"'
    fake = _FakeInflux()
    assert deadletters(fake, layout) == {"oversize": 3}  # type: ignore[arg-type]
    assert fake.queries == [
        'SELECT count("error") FROM "deadletters"."deadletters" GROUP BY "reason"'
    ]


def test_a_gateway_dead_outside_a_fault_is_a_crash_in_spans_and_fails_the_table() -> None:
    # Sampled every 2 s: 470-502 s is one span, 600 s another.
    times = [float(t) for t in range(470, 503, 2)] + [600.0]
    assert dead_spans(times, every_s=2.0) == [(470.0, 502.0), (600.0, 600.0)]
    assert dead_spans([], every_s=2.0) == []
    devices = [_tally()]
    report = {
        "devices_detail": [d.as_dict() for d in devices],
        "totals": totals(devices),
        "gateway_restarts": 2,
        "edge_restarts": 1,
        "faults": [],
        "wall_s": 700.0,
        "gateway_crashes": [{"from_s": 470.0, "to_s": 502.0}],
        "gateway_errors": ["contract.errors.BrokerError: no ack within 30 s"],
        "ok": False,
    }
    text = format_table(report)
    assert "| gateway dead outside a fault (crashed) | 470-502 s |" in text
    assert "FAIL: lost 0 readings, gateway crashes 1" in text
    assert "gateway log: contract.errors.BrokerError: no ack within 30 s" in text


def test_drain_outbox_sends_what_an_outbox_kept_and_empties_it(
    services: Any, unique: str, tmp_path: Path
) -> None:
    from edge.mqtt import MqttLink, MqttSettings
    from edge.outbox import Outbox
    from gateway.chaos.counting import drain_outbox
    from tests.waiting import wait_for

    topic = f"sgtest/{unique}/telemetry"
    outbox = Outbox(tmp_path / "outbox.db")
    for i in range(3):
        outbox.put(topic, f"event-{i}".encode())
    outbox.close()
    got: list[bytes] = []
    subscribed = threading.Event()
    witness = MqttLink(
        MqttSettings(host=services.mqtt_host, port=services.mqtt_port),
        on_connect=lambda link: link.subscribe(topic),
        on_subscribed=lambda _f: subscribed.set(),
        on_message=lambda msg: got.append(bytes(msg.payload)),
    )
    with witness:
        wait_for(subscribed.is_set, 10, "the witness's SUBACK")
        assert drain_outbox(tmp_path / "outbox.db", services.mqtt_port) == 3
        wait_for(lambda: len(got) == 3, 10, "the three kept events")
    assert sorted(got) == [b"event-0", b"event-1", b"event-2"]
    outbox = Outbox(tmp_path / "outbox.db")
    assert outbox.depth == 0  # each deleted on its PUBACK
    outbox.close()


def test_drain_outbox_without_a_broker_is_a_broker_error(tmp_path: Path) -> None:
    from contract.errors import BrokerError
    from edge.childproc import free_port
    from edge.outbox import Outbox
    from gateway.chaos.counting import drain_outbox

    outbox = Outbox(tmp_path / "outbox.db")
    outbox.put("sg/v1/s/d/telemetry", b"kept")
    outbox.close()
    with pytest.raises(BrokerError, match=r"cannot connect to mqtt://127\.0\.0\.1:"):
        drain_outbox(tmp_path / "outbox.db", free_port())
    outbox = Outbox(tmp_path / "outbox.db")
    assert outbox.depth == 1  # nothing sent: nothing deleted
    outbox.close()
