"""The dashboard's alarm board and acknowledge command, without a network."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from contract import TopicScheme
from contract.alarms import AlarmClearedEvent, AlarmRaisedEvent
from gateway.dashboard.board import AlarmBoard
from gateway.ops.acknowledge import ACK_TYPE, ack_message

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def raised(alarm_id: str, at: datetime, severity: str = "major") -> AlarmRaisedEvent:
    return AlarmRaisedEvent.create(
        alarm_id=alarm_id, site="s", device="d", rule="r", severity=severity, state="active",
        event_time=at, raised_at=at,
    )  # fmt: skip


def row(alarm_id: str, at: datetime, severity: str = "major") -> dict[str, Any]:
    return {"time": at.isoformat().replace("+00:00", "Z"), "alarm_id": alarm_id,
            "severity": severity, "state": "active", "site": "s", "device": "d"}  # fmt: skip


def test_mqtt_events_order_by_event_time_and_clear() -> None:
    board = AlarmBoard()
    assert board.apply_event(raised("a", T0))
    assert board.apply_event(raised("b", T0, "critical"))
    assert [d["alarm_id"] for d in board.active()] == ["b", "a"]
    cleared = AlarmClearedEvent.create(
        alarm_id="a", site="s", device="d", rule="r", severity="major", state="cleared",
        event_time=T0 + timedelta(seconds=5), raised_at=T0,
    )  # fmt: skip
    assert board.apply_event(cleared)
    # A late snapshot from InfluxDB that still lists the alarm does not bring it back.
    board.apply_snapshot([row("a", T0), row("b", T0, "critical")], grace_s=0)
    assert [d["alarm_id"] for d in board.active()] == ["b"]


def test_snapshot_drops_what_influx_no_longer_lists_after_grace() -> None:
    board = AlarmBoard()
    old = datetime.now(UTC) - timedelta(minutes=5)
    board.apply_snapshot([row("x", old), row("y", old)])
    assert board.apply_snapshot([row("y", old)], grace_s=30)
    assert [d["alarm_id"] for d in board.active()] == ["y"]
    board.apply_event(raised("fresh", datetime.now(UTC)))
    board.apply_snapshot([row("y", old)], grace_s=30)  # fresh is younger than the grace
    assert {d["alarm_id"] for d in board.active()} == {"y", "fresh"}


def test_the_ack_message_is_the_contract_command_on_the_commands_topic() -> None:
    message = ack_message(TopicScheme("sg/v1"), site="lab", device="d 1", alarm_id="a1", by="me")
    assert message.topic == "sg/v1/lab/d 1/commands"
    sent = json.loads(message.payload)
    assert sent == message.document
    assert sent["type"] == ACK_TYPE
    assert sent["specversion"] == "1.0"
    assert sent["source"] == "/sg/lab/d%201"
    assert sent["data"] == {"site": "lab", "device": "d 1", "alarm_id": "a1", "by": "me",
                            "note": ""}  # fmt: skip
    assert sent["time"].endswith("Z")
