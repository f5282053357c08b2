"""The shard step over hostile batches: it never raises, and every message is accounted for.

Each message of a batch ends as accepted telemetry (its readings stored), a duplicate
(its readings counted as such), a status or command event, or a dead letter with a
reason. The line protocol it renders holds no NaN or inf. The seeded corpus of
``sensorgate fuzz`` is checked here too: what the gateway counts for it is exactly what
the generator expects, so the live run's expectations are sound.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from typing import Any

from fuzz_kit import NOW, hostile_telemetry, hostile_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import DeadLetterReason, Reading, TelemetryEvent, TopicScheme, encode
from contract.events import DeviceOnlineEvent
from dataflows.batch import MessageBatch
from dataflows.columns import EncodedPoints
from dataflows.config import StreamConfig
from dataflows.decode import DecodedBatch
from dataflows.eventclock import FakeClock, to_us
from dataflows.ingest import IngestLimits
from dataflows.observer import CountingObserver
from dataflows.shard import ShardProcessor
from gateway.fuzz.corpus import Tally, generate
from gateway.influx.encoder import LineProtocolEncoder

SCHEME = TopicScheme()
NOW_US = to_us(NOW)
LIMITS = IngestLimits(max_payload_bytes=16_384)
_NON_FINITE = re.compile(rb"(?i)=-?(nan|inf)")


class _Recorder:
    """Wraps a shard's decoder to keep what each segment decoded to."""

    def __init__(self, proc: ShardProcessor) -> None:
        self.decoded: list[DecodedBatch] = []
        inner = proc.decoder.decode

        def decode(batch: MessageBatch) -> DecodedBatch:
            out = inner(batch)
            self.decoded.append(out)
            return out

        proc.decoder.decode = decode  # type: ignore[method-assign]


def _processor(observer: CountingObserver, clock: FakeClock) -> ShardProcessor:
    return ShardProcessor(
        topics=SCHEME,
        config=StreamConfig.from_strings(("10s", "30s/10s"), 5),
        encoder=LineProtocolEncoder(include_seq=True),
        limits=LIMITS,
        clock=clock,
        observer=observer,
    )


def _check_body(out: Any) -> int:
    lines = 0
    for points in out.points:
        assert isinstance(points, EncodedPoints)
        assert not _NON_FINITE.search(points.body), points.body[:400]
        lines += points.lines
    return lines


senders = st.sampled_from(["d", "d", "e", "f"])
messages = st.one_of(
    senders.flatmap(
        lambda d: hostile_telemetry(device=d).map(lambda p: (SCHEME.telemetry("s", d), p))
    ),
    hostile_telemetry().map(lambda p: (SCHEME.status("s", "d"), p)),
    hostile_telemetry().map(lambda p: ("sg/v1/s/d/commands", p)),
    st.tuples(hostile_text.map(lambda x: f"sg/v1/s/{x}/telemetry"), hostile_telemetry()),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(messages, max_size=10), min_size=1, max_size=4))
def test_the_shard_never_raises_and_accounts_for_every_message(
    batches: list[list[tuple[str, bytes]]],
) -> None:
    observer = CountingObserver()
    clock = FakeClock(NOW_US)
    proc = _processor(observer, clock)
    recorder = _Recorder(proc)
    letters = 0
    for messages_ in batches:
        batch = MessageBatch()
        for topic, payload in messages_:
            batch.append(topic, payload, clock.now_us())
        out = proc.process([batch])
        letters += len(out.deadletters)
        assert all(d.data.reason in set(DeadLetterReason) for d in out.deadletters)
        _check_body(out)
        clock.advance(20)
        _check_body(proc.tick())
    total = sum(len(m) for m in batches)
    decoded = recorder.decoded
    assert sum(d.messages + len(d.events) + len(d.rejected) for d in decoded) == total
    assert letters == sum(len(d.rejected) for d in decoded)
    readings = sum(d.readings for d in decoded)
    assert observer.counts["readings"] + observer.counts["duplicates"] == readings


def test_the_seeded_corpus_gets_exactly_the_verdicts_it_expects() -> None:
    observer = CountingObserver()
    start = NOW - timedelta(seconds=30)
    clock = FakeClock(NOW_US)
    proc = _processor(observer, clock)
    tally = Tally()
    batch = MessageBatch()
    for i, msg in enumerate(generate(4_000, seed=7, start=start, max_payload_bytes=16_384)):
        tally.add(msg)
        batch.append(msg.topic, msg.payload, clock.now_us())
        if i % 97 == 96:  # batches of uneven size, as the MQTT source makes them
            _check_body(proc.process([batch]))
            batch = MessageBatch()
    _check_body(proc.process([batch]))
    got = Counter(
        {k.split(":", 1)[1]: v for k, v in observer.counts.items() if k.startswith("rejected:")}
    )
    assert got == tally.deadletters
    assert observer.counts["messages"] == tally.accepted
    assert observer.counts["readings"] == tally.readings
    assert observer.counts["duplicates"] == tally.duplicate_readings
    assert set(tally.by_category) >= {"valid", "duplicate", "deep_nesting", "oversize"}


def test_a_resend_after_a_status_message_in_the_same_batch_is_a_duplicate() -> None:
    """A device reconnects: its birth lands between an event and its re-send.

    The batch is decoded in segments split at the status message; the re-send once
    looked new to the second segment, and its readings were folded twice.
    """
    observer = CountingObserver()
    proc = _processor(observer, FakeClock(NOW_US))
    reading = Reading(sensor="env", metric="t", value=1.0, time=NOW - timedelta(seconds=1))
    event = encode(TelemetryEvent.create(site="s", device="d", sequence=3, readings=[reading]))
    birth = encode(DeviceOnlineEvent.create(site="s", device="d"))
    batch = MessageBatch()
    for topic, payload in [
        (SCHEME.telemetry("s", "d"), event),
        (SCHEME.status("s", "d"), birth),
        (SCHEME.telemetry("s", "d"), event),
    ]:
        batch.append(topic, payload, NOW_US)
    proc.process([batch])
    assert observer.counts["messages"] == 1
    assert observer.counts["duplicates"] == 1
