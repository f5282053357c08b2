import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import (
    DeadLetterEvent,
    DeadLetterReason,
    DecodeError,
    DeviceOfflineEvent,
    DeviceOnlineEvent,
    Reading,
    TelemetryEvent,
    decode,
    decode_as,
    encode,
)

ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/+#$"),
    min_size=1,
    max_size=40,
).filter(lambda s: not s.endswith("\\"))
times = st.datetimes(
    # hypothesis takes naive bounds and attaches the zones itself.
    min_value=datetime(1971, 1, 1),  # noqa: DTZ001
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)
readings = st.builds(
    Reading,
    sensor=ids,
    metric=ids,
    value=st.floats(allow_nan=False, allow_infinity=False),
    unit=st.text(max_size=8),
    time=times,
)
telemetry = st.builds(
    TelemetryEvent.create,
    site=ids,
    device=ids,
    sequence=st.integers(min_value=0, max_value=2**63 - 1),
    readings=st.lists(readings, min_size=1, max_size=5),
    time=times,
)


@given(telemetry)
def test_telemetry_round_trips(event: TelemetryEvent) -> None:
    raw = encode(event)
    assert decode(raw) == event
    assert decode_as(raw, TelemetryEvent) == event


@given(site=ids, device=ids, time=times)
def test_status_events_round_trip(site: str, device: str, time: datetime) -> None:
    online = DeviceOnlineEvent.create(
        site=site, device=device, time=time, agent_version="1.2", drivers=("bme280",)
    )
    offline = DeviceOfflineEvent.create(site=site, device=device, time=time, reason="lwt")
    assert decode(encode(online)) == online
    assert decode(encode(offline)) == offline


@given(payload=st.binary(max_size=300), topic=st.text(max_size=50))
def test_deadletter_round_trips_and_keeps_the_raw_bytes(payload: bytes, topic: str) -> None:
    event = DeadLetterEvent.create(
        reason=DeadLetterReason.NOT_JSON, error="boom", topic=topic, payload=payload
    )
    back = decode(encode(event))
    assert back == event
    assert isinstance(back, DeadLetterEvent)
    assert back.data.payload == payload
    assert back.data.payload_sha256 == hashlib.sha256(payload).hexdigest()
    assert not back.data.payload_truncated


@given(payload=st.binary(min_size=0, max_size=3000), keep=st.integers(0, 2000))
def test_a_deadletter_keeps_at_most_its_bound_with_size_and_digest(
    payload: bytes, keep: int
) -> None:
    event = DeadLetterEvent.create(
        reason=DeadLetterReason.OVERSIZE, error="big", topic="t", payload=payload, keep_bytes=keep
    )
    back = decode(encode(event))
    assert isinstance(back, DeadLetterEvent)
    assert back.data.payload == payload[:keep]
    assert back.data.payload_size == len(payload)
    assert back.data.payload_sha256 == hashlib.sha256(payload).hexdigest()
    assert back.data.payload_truncated == (len(payload) > keep)


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_raise_only_decode_error(raw: bytes) -> None:
    reason = None
    try:
        decode(raw)
    except DecodeError as exc:  # the only exception allowed out
        reason = exc.reason
    assert reason is None or isinstance(reason, DeadLetterReason)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values, st.sampled_from(["io.sensorgate.telemetry.reported.v1", "x", None]))
def test_arbitrary_json_raises_only_decode_error(doc: object, event_type: str | None) -> None:
    if isinstance(doc, dict) and event_type is not None:
        doc = {**doc, "type": event_type}
    reason = None
    try:
        decode_as(json.dumps(doc).encode(), TelemetryEvent)
    except DecodeError as exc:  # the only exception allowed out
        reason = exc.reason
    assert reason in {None, DeadLetterReason.SCHEMA_VIOLATION, DeadLetterReason.NOT_JSON}


def _valid_doc() -> dict[str, object]:
    event = TelemetryEvent.create(
        site="s",
        device="d",
        sequence=1,
        readings=[Reading(sensor="t", metric="temp", value=1.0, time=datetime.now(UTC))],
    )
    return json.loads(encode(event))


@pytest.mark.parametrize(
    ("raw", "reason", "needle"),
    [
        (b"{not json", DeadLetterReason.NOT_JSON, "not JSON"),
        (b"\xff\xfe\x00", DeadLetterReason.NOT_JSON, "not UTF-8"),
        (b"[1, 2]", DeadLetterReason.SCHEMA_VIOLATION, "expected a JSON object"),
        (b'{"id": "x"}', DeadLetterReason.SCHEMA_VIOLATION, "attribute 'type'"),
        (
            b'{"type": "io.sensorgate.telemetry.reported.v2"}',
            DeadLetterReason.UNKNOWN_MAJOR_VERSION,
            "major version 2; this gateway speaks v1",
        ),
    ],
)
def test_decode_errors_say_what_was_expected(
    raw: bytes, reason: DeadLetterReason, needle: str
) -> None:
    with pytest.raises(DecodeError) as info:
        decode(raw)
    assert info.value.reason is reason
    assert needle in info.value.detail


def test_schema_violation_names_the_field() -> None:
    doc = _valid_doc()
    doc["data"]["readings"][0]["value"] = "hot"  # type: ignore[index]
    with pytest.raises(DecodeError) as info:
        decode(json.dumps(doc).encode())
    assert info.value.reason is DeadLetterReason.SCHEMA_VIOLATION
    assert "data.readings.0.value" in info.value.detail
    assert "'hot'" in info.value.detail


def test_naive_timestamps_are_refused() -> None:
    doc = _valid_doc()
    doc["data"]["readings"][0]["time"] = "2026-01-01T00:00:00"  # type: ignore[index]
    with pytest.raises(DecodeError, match="timezone"):
        decode(json.dumps(doc).encode())


def test_times_are_normalised_to_utc() -> None:
    doc = _valid_doc()
    doc["data"]["readings"][0]["time"] = "2026-01-01T05:30:00+05:30"  # type: ignore[index]
    event = decode_as(json.dumps(doc).encode(), TelemetryEvent)
    assert event.data.readings[0].time == datetime(2026, 1, 1, tzinfo=UTC)
    assert event.data.readings[0].time.tzinfo is UTC


def test_newer_minor_fields_are_tolerated() -> None:
    doc = _valid_doc()
    doc["newextension"] = "x"
    doc["data"]["firmware"] = "2.0"  # type: ignore[index]
    doc["data"]["readings"][0]["quality"] = 0.9  # type: ignore[index]
    event = decode_as(json.dumps(doc).encode(), TelemetryEvent)
    assert event.data.sequence == 1


def test_oversize_is_refused_before_parsing() -> None:
    with pytest.raises(DecodeError) as info:
        decode(b"x" * 101, max_bytes=100)
    assert info.value.reason is DeadLetterReason.OVERSIZE
    assert "101 bytes; the limit is 100" in info.value.detail


def test_decode_as_refuses_another_type() -> None:
    raw = encode(DeviceOnlineEvent.create(site="s", device="d"))
    with pytest.raises(DecodeError, match="expected an event of type"):
        decode_as(raw, TelemetryEvent)


def test_reading_needs_exactly_one_of_value_and_fault() -> None:
    now = datetime.now(UTC)
    with pytest.raises(ValueError, match="exactly one of 'value' and 'fault'"):
        Reading(sensor="s", metric="m", time=now)
    with pytest.raises(ValueError, match="exactly one of 'value' and 'fault'"):
        Reading(sensor="s", metric="m", value=1.0, fault="x", time=now)
    assert Reading(sensor="s", metric="m", fault="crc", time=now).value is None


def test_non_finite_values_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        Reading(sensor="s", metric="m", value=float("nan"), time=datetime.now(UTC))


def test_events_are_frozen() -> None:
    event = TelemetryEvent.create(
        site="s",
        device="d",
        sequence=0,
        readings=[Reading(sensor="t", metric="m", value=1.0, time=datetime.now(UTC))],
    )
    with pytest.raises(ValueError, match="frozen"):
        event.data.sequence = 5  # type: ignore[misc]


def test_envelope_is_cloudevents_structured_json() -> None:
    event = TelemetryEvent.create(
        site="plant 1",
        device="pi/7".replace("/", "-"),
        sequence=3,
        readings=[Reading(sensor="t", metric="m", value=1.5, time=datetime.now(UTC))],
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    doc = json.loads(encode(event))
    assert doc["specversion"] == "1.0"
    assert doc["type"] == "io.sensorgate.telemetry.reported.v1"
    assert doc["datacontenttype"] == "application/json"
    assert doc["source"] == "/sg/plant%201/pi-7"
    assert doc["subject"] == "pi-7"
    assert doc["time"].endswith("Z")
    assert doc["traceparent"].startswith("00-")
    assert set(doc) >= {"id", "source", "type", "time", "data"}
