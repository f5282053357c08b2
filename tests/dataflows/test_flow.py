from datetime import UTC, datetime

from bytewax.testing import TestingSink, TestingSource, run_main

from contract import DeadLetterEvent, DeadLetterReason, Reading, TelemetryEvent, TopicScheme, encode
from dataflows.batch import MessageBatch
from dataflows.columns import PointColumns
from dataflows.config import StreamConfig
from dataflows.eventclock import to_us
from dataflows.flow import build_flow
from dataflows.rules import parse_rules
from dataflows.shard import StaticRules


def test_flow_splits_valid_telemetry_from_dead_letters_across_shards() -> None:
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
    messages = [(scheme.telemetry("s", e.data.device), encode(e)) for e in good]
    messages.insert(2, (scheme.telemetry("s", "d0"), b"nope"))
    messages.append((scheme.telemetry("s", "d9"), encode(good[0])))
    batch = MessageBatch()
    for topic, payload in messages:
        batch.append(topic, payload, to_us(now))
    points: list[PointColumns] = []
    letters: list[DeadLetterEvent] = []
    flow = build_flow(
        TestingSource([batch]),
        topics=scheme,
        points_sink=TestingSink(points),
        deadletter_sink=TestingSink(letters),
        rules=StaticRules(parse_rules({})),
        stream=StreamConfig(shards=4),
    )
    run_main(flow)
    stored = sorted(
        (p.names.device[s], v)
        for p in points
        if p.readings is not None
        for s, v in zip(p.readings.series.tolist(), p.readings.value.tolist(), strict=True)
    )
    assert stored == [(f"d{i}", float(i)) for i in range(5)]
    assert sorted((d.data.reason, d.data.payload) for d in letters) == sorted(
        [
            (DeadLetterReason.NOT_JSON, b"nope"),
            (DeadLetterReason.TOPIC_MISMATCH, encode(good[0])),
        ]
    )
