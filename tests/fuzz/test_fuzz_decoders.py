"""Every decoder takes any bytes: a typed verdict, never an exception.

``contract.codec.decode``/``decode_as`` raise only :class:`DecodeError` with a fixed
reason; :class:`~dataflows.ingest.Ingestor` never raises; the columnar
:class:`~dataflows.decode.BatchDecoder` (fast msgspec path + pydantic arbiter) accounts
for every message of a batch (accepted, an event, or a dead letter with a reason) and
puts only finite values with in-range times into its columns.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
from fuzz_kit import NOW, deep, hostile_telemetry, hostile_text, json_values, render, telemetry_docs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import DeadLetterReason, DecodeError, TelemetryEvent, TopicScheme
from contract.codec import decode, decode_as
from contract.commands import AcknowledgeAlarmCommand
from dataflows.batch import MessageBatch
from dataflows.decode import BatchDecoder
from dataflows.eventclock import to_us
from dataflows.ingest import Accepted, CommandIn, IngestLimits, Ingestor, RawMessage, Rejected
from dataflows.registry import Registry

SCHEME = TopicScheme()
NOW_US = to_us(NOW)
REASONS = set(DeadLetterReason)
LIMITS = IngestLimits(max_payload_bytes=64 * 1024)
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

topics = st.one_of(
    st.sampled_from(
        [
            SCHEME.telemetry("s", "d"),
            SCHEME.telemetry("s", "other"),
            SCHEME.status("s", "d"),
            "sg/v1/s/d/commands",
            "sg/v1/s/d/alarms",
            "sg/v1/s/d/telemetry/extra",
            "sg/v1/s d/d/telemetry",
            "sg/v1//d/telemetry",
            "elsewhere/s/d/telemetry",
        ]
    ),
    hostile_text.map(lambda level: f"sg/v1/{level}/d/telemetry"),
)


def _payloads() -> st.SearchStrategy[bytes]:
    return st.one_of(
        hostile_telemetry(),
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
    )


@FAST
@given(raw=_payloads(), max_bytes=st.sampled_from([256, 4096, 1_048_576]))
def test_codec_decode_raises_only_decode_errors(raw: bytes, max_bytes: int) -> None:
    for call in (
        lambda: decode(raw, max_bytes=max_bytes),
        lambda: decode_as(raw, TelemetryEvent, max_bytes=max_bytes),
        lambda: decode_as(raw, AcknowledgeAlarmCommand, max_bytes=max_bytes),
    ):
        error = _error_of(call)
        if error is not None:
            assert error.reason in REASONS
            assert len(str(error)) < 4096  # an error names what arrived, briefly


def _error_of(call: Callable[[], Any]) -> DecodeError | None:
    """Run a decoder; return its DecodeError (anything else propagates and fails)."""
    try:
        event = call()
    except DecodeError as exc:
        return exc
    assert event.model_dump_json()  # whatever decoded also encodes again
    return None


@settings(max_examples=20, deadline=None)
@given(depth=st.sampled_from([100, 1_000, 10_000, 200_000]), kind=st.sampled_from("[{"))
def test_deep_nesting_is_a_dead_letter_not_a_recursion_error(depth: int, kind: str) -> None:
    raw = deep(depth) if kind == "[" else deep(depth, '{"data":', "}")
    error = _error_of(lambda: decode_as(raw, TelemetryEvent, max_bytes=10_000_000))
    assert error is not None
    assert error.reason in (DeadLetterReason.NOT_JSON, DeadLetterReason.SCHEMA_VIOLATION)
    ingestor = Ingestor(SCHEME, IngestLimits(max_payload_bytes=10_000_000))
    result = ingestor.accept(RawMessage(SCHEME.telemetry("s", "d"), raw, NOW))
    assert isinstance(result, Rejected)


@FAST
@given(topic=topics, raw=_payloads())
def test_ingestor_accepts_or_rejects_with_a_reason(topic: str, raw: bytes) -> None:
    result = Ingestor(SCHEME, LIMITS).accept(RawMessage(topic, raw, NOW))
    if isinstance(result, Rejected):
        assert result.reason in REASONS
        assert result.message.payload == raw
        letter = result.to_event("gw", keep_bytes=1024)
        assert letter.data.payload_size == len(raw)
        assert len(letter.data.payload) == min(len(raw), 1024)
        assert letter.data.payload_truncated == (len(raw) > 1024)
    elif isinstance(result, Accepted):
        data = result.event.data
        assert (data.site, data.device) == ("s", "d")
        for reading in data.readings:
            assert reading.value is None or math.isfinite(reading.value)
            assert NOW - timedelta(days=30) <= reading.time <= NOW + timedelta(minutes=5)
    else:
        assert isinstance(result, CommandIn) or result.event.data.device == "d"


def _batch(messages: list[tuple[str, bytes]]) -> MessageBatch:
    batch = MessageBatch()
    for topic, payload in messages:
        batch.append(topic, payload, NOW_US)
    return batch


def _check_accounted(decoder: BatchDecoder, messages: list[tuple[str, bytes]]) -> None:
    """Decode ``messages``: each is accepted, an event or a dead letter, exactly once."""
    out = decoder.decode(_batch(messages))
    assert out.messages + len(out.events) + len(out.rejected) == len(messages)
    assert all(r.reason in REASONS for r in out.rejected)
    assert sum(out.msg_count) == out.readings == len(out.t_us) == len(out.value)
    valued = ~np.isnan(out.value)
    assert np.isfinite(out.value[valued]).all()
    assert set(np.flatnonzero(~valued).tolist()) == set(out.faults)
    past = int(LIMITS.max_past.total_seconds() * 1e6)
    future = int(LIMITS.max_future.total_seconds() * 1e6)
    assert ((out.t_us >= NOW_US - past) & (out.t_us <= NOW_US + future)).all()
    names = decoder.registry.names
    assert (out.series >= 0).all()
    assert (out.series < len(names)).all()


@FAST
@given(messages=st.lists(st.tuples(topics, _payloads()), min_size=1, max_size=12))
def test_batch_decoder_accounts_for_every_hostile_message(
    messages: list[tuple[str, bytes]],
) -> None:
    _check_accounted(BatchDecoder(SCHEME, Registry(), LIMITS), messages)


@st.composite
def _near_valid(draw: st.DrawFn) -> bytes:
    """Telemetry that the fast path takes, with one field made hostile."""
    doc = draw(telemetry_docs())
    doc.update(specversion="1.0", type="io.sensorgate.telemetry.reported.v1", id="e")
    doc["time"] = NOW.isoformat()
    data = doc["data"] = dict(doc.get("data") or {}) if isinstance(doc.get("data"), dict) else {}
    data.update(site="s", device="d")
    data.setdefault("sequence", 1)
    data.setdefault("readings", [])
    return render(doc, draw)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payloads=st.lists(_near_valid(), min_size=1, max_size=8),
    repeat=st.booleans(),
)
def test_fast_and_slow_paths_together_account_for_every_message(
    payloads: list[bytes], repeat: bool
) -> None:
    decoder = BatchDecoder(SCHEME, Registry(), LIMITS)
    messages = [(SCHEME.telemetry("s", "d"), p) for p in payloads]
    _check_accounted(decoder, messages)
    if repeat:  # the registry now knows the series: the fast path takes more
        _check_accounted(decoder, messages)


@settings(max_examples=50, deadline=None)
@given(
    text=st.one_of(hostile_text, st.text(min_size=1, max_size=2000)),
    where=st.sampled_from(["id", "source", "sensor", "metric", "unit", "fault", "outbox"]),
)
def test_long_and_strange_strings_are_refused_or_kept_whole(text: str, where: str) -> None:
    reading: dict[str, object] = {"sensor": "env", "metric": "temp", "time": NOW.isoformat()}
    reading["value"] = 1.0
    doc: dict[str, object] = {
        "specversion": "1.0",
        "id": "e",
        "source": "/x",
        "type": "io.sensorgate.telemetry.reported.v1",
        "time": NOW.isoformat(),
        "data": {"site": "s", "device": "d", "sequence": 0, "readings": [reading]},
    }
    if where in ("id", "source"):
        doc[where] = text
    elif where == "outbox":
        doc["data"]["outbox"] = text  # type: ignore[index]
    elif where == "fault":
        del reading["value"]
        reading["fault"] = text
    else:
        reading[where] = text
    _check_accounted(
        BatchDecoder(SCHEME, Registry(), LIMITS),
        [(SCHEME.telemetry("s", "d"), json.dumps(doc).encode())],
    )
