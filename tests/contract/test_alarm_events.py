"""Alarm events: the v1 minor addition (detail, folded_raises, rate_limited) is compatible."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from contract.alarms import AlarmData, AlarmDetail, AlarmRaisedEvent, decode_alarm, encode_alarm
from contract.events import _Frozen

T = datetime(2026, 3, 1, tzinfo=UTC)
BASE = {
    "alarm_id": "a1", "site": "s", "device": "d", "sensor": "env", "metric": "t",
    "rule": "anomaly", "kind": "anomaly", "severity": "major", "state": "active",
    "value": 31.0, "threshold": 21.0, "message": "m", "event_time": T, "raised_at": T,
}  # fmt: skip


class OldAlarmData(_Frozen):
    """AlarmData as a reader built before the addition sees it (a subset of fields)."""

    alarm_id: str
    site: str
    device: str
    rule: str
    severity: str
    state: str
    value: float | None = None
    message: str = ""
    flapping: bool = False


def test_an_event_without_the_new_fields_is_what_it_was() -> None:
    event = AlarmRaisedEvent.create(**BASE)
    doc = json.loads(encode_alarm(event))
    assert not {"detail", "folded_raises", "rate_limited"} & set(doc["data"])
    assert decode_alarm(encode_alarm(event)) == event


def test_old_readers_ignore_the_new_fields_and_new_readers_read_them() -> None:
    detail = AlarmDetail(component="prediction_error", score=3.2, expected=21.0,
                         band_low=19.5, band_high=22.5, history_readings=500)  # fmt: skip
    event = AlarmRaisedEvent.create(**BASE, detail=detail, folded_raises=2, rate_limited=True)
    raw = encode_alarm(event)
    data = json.loads(raw)["data"]
    assert data["detail"]["band_high"] == 22.5
    old = OldAlarmData.model_validate(data)
    assert (old.alarm_id, old.value) == ("a1", 31.0)
    again = decode_alarm(raw)
    assert again.data.detail == detail
    assert (again.data.folded_raises, again.data.rate_limited) == (2, True)
    assert again.type == "io.sensorgate.alarm.raised.v1"  # still v1: a minor addition


def test_a_newer_detail_item_is_ignored_too() -> None:
    data = AlarmData.model_validate({**BASE, "detail": {"component": "x", "from_the_future": 1}})
    assert data.detail == AlarmDetail(component="x")


def test_detail_refuses_what_is_not_a_number() -> None:
    with pytest.raises(ValidationError):
        AlarmDetail(score=float("nan"))
    with pytest.raises(ValidationError):
        AlarmDetail(history_readings=-1)
