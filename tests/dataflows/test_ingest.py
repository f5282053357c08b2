import json
from datetime import UTC, datetime, timedelta

import pytest

from contract import DeadLetterReason, Reading, TelemetryEvent, TopicScheme, decode, encode
from dataflows.ingest import Accepted, IngestLimits, Ingestor, RawMessage, Rejected

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SCHEME = TopicScheme()


def _event(site: str = "s1", device: str = "d1", when: datetime = NOW) -> TelemetryEvent:
    return TelemetryEvent.create(
        site=site,
        device=device,
        sequence=7,
        readings=[Reading(sensor="env", metric="temp", value=20.5, unit="degC", time=when)],
    )


def _msg(payload: bytes, topic: str = "sg/v1/s1/d1/telemetry") -> RawMessage:
    return RawMessage(topic=topic, payload=payload, received_at=NOW)


def test_valid_telemetry_is_accepted() -> None:
    event = _event()
    result = Ingestor(SCHEME).accept(_msg(encode(event)))
    assert isinstance(result, Accepted)
    assert result.event == event
    assert result.device_key == "s1/d1"


@pytest.mark.parametrize(
    ("payload", "topic", "reason"),
    [
        (b"garbage", "sg/v1/s1/d1/telemetry", DeadLetterReason.NOT_JSON),
        (
            b'{"type": "io.sensorgate.telemetry.reported.v1"}',
            "sg/v1/s1/d1/telemetry",
            DeadLetterReason.SCHEMA_VIOLATION,
        ),
        (
            b'{"type": "io.sensorgate.telemetry.reported.v3"}',
            "sg/v1/s1/d1/telemetry",
            DeadLetterReason.UNKNOWN_MAJOR_VERSION,
        ),
        (encode(_event(device="d2")), "sg/v1/s1/d1/telemetry", DeadLetterReason.TOPIC_MISMATCH),
        (encode(_event(site="s2")), "sg/v1/s1/d1/telemetry", DeadLetterReason.TOPIC_MISMATCH),
        (encode(_event()), "sg/v1/s1/telemetry", DeadLetterReason.TOPIC_MISMATCH),
        (b"x" * 2000, "sg/v1/s1/d1/telemetry", DeadLetterReason.OVERSIZE),
        (
            encode(_event(when=NOW + timedelta(hours=1))),
            "sg/v1/s1/d1/telemetry",
            DeadLetterReason.TIMESTAMP_OUT_OF_RANGE,
        ),
        (
            encode(_event(when=NOW - timedelta(days=400))),
            "sg/v1/s1/d1/telemetry",
            DeadLetterReason.TIMESTAMP_OUT_OF_RANGE,
        ),
    ],
)
def test_rejections_carry_reason_and_raw_bytes(
    payload: bytes, topic: str, reason: DeadLetterReason
) -> None:
    ingestor = Ingestor(SCHEME, IngestLimits(max_payload_bytes=1000))
    result = ingestor.accept(_msg(payload, topic))
    assert isinstance(result, Rejected)
    assert result.reason is reason
    letter = result.to_event("gw-1")
    back = decode(encode(letter))
    assert back == letter
    assert letter.data.payload == payload
    assert letter.data.topic == topic
    assert letter.data.reason is reason
    assert letter.data.error == result.error
    assert letter.source == "/sg/_gateway/gw-1"


def test_mismatch_error_names_both_devices() -> None:
    result = Ingestor(SCHEME).accept(_msg(encode(_event(device="intruder"))))
    assert isinstance(result, Rejected)
    assert "'intruder'" in result.error
    assert "'d1'" in result.error


def test_limits_are_configurable() -> None:
    late = encode(_event(when=NOW - timedelta(hours=2)))
    assert isinstance(Ingestor(SCHEME).accept(_msg(late)), Accepted)
    strict = Ingestor(SCHEME, IngestLimits(max_past=timedelta(hours=1)))
    assert isinstance(strict.accept(_msg(late)), Rejected)


def test_unknown_extra_fields_are_accepted() -> None:
    doc = json.loads(encode(_event()))
    doc["data"]["extra_minor_field"] = 1
    assert isinstance(Ingestor(SCHEME).accept(_msg(json.dumps(doc).encode())), Accepted)
