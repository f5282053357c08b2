from datetime import UTC, datetime

from bytewax.testing import TestingSink, TestingSource, run_main

from contract import DeadLetterEvent, DeadLetterReason, Reading, TelemetryEvent, TopicScheme, encode
from dataflows.batch import MessageBatch
from dataflows.columns import PointColumns
from dataflows.config import StreamConfig
from dataflows.eventclock import to_us
from dataflows.flow import build_flow
from dataflows.rules import StaticRules, parse_rules


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


def test_an_exception_in_a_shard_dead_letters_the_poison_message_and_the_flow_goes_on(
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    import numpy as np

    from dataflows.series_alarms import SeriesAlarms

    real = SeriesAlarms.process

    def poisoned(self, fresh):  # type: ignore[no-untyped-def]
        if (fresh.value == 666.0).any():
            raise RuntimeError("a detector bug, triggered by 666")
        return real(self, fresh)

    monkeypatch.setattr(SeriesAlarms, "process", poisoned)
    now = datetime.now(UTC)
    scheme = TopicScheme()
    batch = MessageBatch()
    for i, value in enumerate([1.0, 2.0, 666.0, 3.0]):
        event = TelemetryEvent.create(
            site="s",
            device="d",
            sequence=i,
            readings=[Reading(sensor="x", metric="m", value=value, time=now)],
        )
        batch.append(scheme.telemetry("s", "d"), encode(event), to_us(now))
    points: list[PointColumns] = []
    letters: list[DeadLetterEvent] = []
    errors: list[str] = []
    flow = build_flow(
        TestingSource([batch]),
        topics=scheme,
        points_sink=TestingSink(points),
        deadletter_sink=TestingSink(letters),
        on_error=errors.append,
    )
    run_main(flow)
    stored = sorted(v for p in points if p.readings is not None for v in p.readings.value.tolist())
    assert stored == [1.0, 2.0, 3.0]
    assert [d.data.reason for d in letters] == [DeadLetterReason.DECODE_ERROR]
    assert "666" in letters[0].data.error
    assert b"666" in letters[0].data.payload
    assert errors  # counted (the gateway counts them in sensorgate_shard_errors_total)
    assert np.isfinite(stored).all()
