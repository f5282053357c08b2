from datetime import UTC, datetime

from bytewax.testing import TestingSink, TestingSource, run_main

from contract import DeadLetterEvent, DeadLetterReason, Reading, TelemetryEvent, TopicScheme, encode
from dataflows.flow import build_flow
from dataflows.ingest import Accepted, Ingestor, RawMessage


def test_flow_splits_valid_telemetry_from_dead_letters() -> None:
    now = datetime.now(UTC)
    scheme = TopicScheme()
    good = [
        TelemetryEvent.create(
            site="s",
            device=f"d{i}",
            sequence=i,
            readings=[Reading(sensor="x", metric="m", value=float(i), time=now)],
        )
        for i in range(5)
    ]
    messages = [RawMessage(scheme.telemetry("s", e.data.device), encode(e), now) for e in good]
    messages.insert(2, RawMessage(scheme.telemetry("s", "d0"), b"nope", now))
    messages.append(RawMessage(scheme.telemetry("s", "d9"), encode(good[0]), now))
    accepted: list[Accepted] = []
    letters: list[DeadLetterEvent] = []
    flow = build_flow(
        TestingSource(messages),
        ingestor=Ingestor(scheme),
        points_sink=TestingSink(accepted),
        deadletter_sink=TestingSink(letters),
    )
    run_main(flow)
    assert [a.event for a in accepted] == good
    assert [(d.data.reason, d.data.payload) for d in letters] == [
        (DeadLetterReason.NOT_JSON, b"nope"),
        (DeadLetterReason.TOPIC_MISMATCH, encode(good[0])),
    ]
