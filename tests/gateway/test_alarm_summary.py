"""The retained active-alarm summary: topics, filters, decoding."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from contract import TopicScheme
from contract.errors import DecodeError, TopicError
from gateway.connectors.alarm_summary import (
    ACTIVE_TYPE,
    active_topic,
    alarm_filters,
    decode_summary,
    summary_device,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_topics_and_filters() -> None:
    topics = TopicScheme("sg/v1")
    assert active_topic(topics, "plant", "pump 1") == "sg/v1/plant/pump 1/alarms/active"
    assert alarm_filters(topics) == ("sg/v1/+/+/alarms", "sg/v1/+/+/alarms/active")
    assert alarm_filters(topics, device="p") == ("sg/v1/+/p/alarms", "sg/v1/+/p/alarms/active")
    with pytest.raises(TopicError):
        alarm_filters(topics, site="a/b")
    assert summary_device(topics, "sg/v1/plant/pump 1/alarms/active") == ("plant", "pump 1")
    for bad in (
        "sg/v1/plant/pump/status/active",
        "sg/v1/plant/pump/alarms",
        "other/x/y/alarms/active",
    ):
        with pytest.raises(TopicError):
            summary_device(topics, bad)


def test_decode_summary() -> None:
    alarm = {
        "alarm_id": "a1", "site": "plant", "device": "pump", "rule": "hot",
        "severity": "major", "state": "active", "event_time": T0.isoformat(),
        "raised_at": T0.isoformat(),
    }  # fmt: skip
    raw = json.dumps({"type": ACTIVE_TYPE, "site": "plant", "device": "pump", "alarms": [alarm],
                      "newer_field": 1}).encode()  # fmt: skip
    summary = decode_summary(raw)
    assert summary.alarms[0].alarm_id == "a1"
    assert summary.alarms[0].severity.value == "major"
    assert decode_summary(json.dumps({"type": ACTIVE_TYPE, "site": "s", "device": "d",
                                      "alarms": []}).encode()).alarms == ()  # fmt: skip
    with pytest.raises(DecodeError, match="alarms"):
        decode_summary(b'{"type": "io.sensorgate.alarm.active.v1", "site": "s", "device": "d",'
                       b' "alarms": [{"alarm_id": ""}]}')  # fmt: skip
    with pytest.raises(DecodeError):
        decode_summary(b"not json")
