"""The adapters' path of the decode stage: batched value topics give what the adapter gives."""

from __future__ import annotations

from dataflows.adapters import AdapterSet, parse_adapters
from dataflows.batch import MessageBatch
from dataflows.decode import BatchDecoder
from dataflows.observer import CountingObserver
from dataflows.registry import Registry
from dataflows.shard import ShardProcessor
from tests.dataflows.shard_kit import SCHEME

NOW_US = 1_764_504_000_000_000  # 2025-11-30T12:00:00Z
SHELLY = {
    "name": "shelly",
    "kind": "shelly",
    "topic": "shellies",
    "gen1": True,
    "gen1_temperature_unit": "F",
    "site": "home",
}
PLUG = "shellies/plug-1"
VALUES = [
    (f"{PLUG}/relay/0/power", b"49.97"),
    (f"{PLUG}/relay/0/energy", b"600"),  # Watt-minutes: 10 Wh
    (f"{PLUG}/sensor/temperature", b"71.6"),  # °F by configuration: 22 °C
    (f"{PLUG}/sensor/humidity", b"-1e1"),
    (f"{PLUG}/relay/0/power", b"50"),
]


def _batch(messages: list[tuple[str, bytes]], start_us: int) -> MessageBatch:
    batch = MessageBatch()
    for k, (topic, payload) in enumerate(messages):
        batch.append(topic, payload, start_us + k)  # unique stamps, as the source gives
    return batch


def _decoder() -> tuple[BatchDecoder, AdapterSet]:
    config = parse_adapters({"adapter": [SHELLY]})
    return BatchDecoder(SCHEME, Registry(), adapters=AdapterSet(config)), AdapterSet(config)


def test_batched_value_topics_give_exactly_what_the_adapter_gives() -> None:
    decoder, reference = _decoder()
    decoder.decode(_batch(VALUES, NOW_US))  # first sight: the general path registers
    assert decoder._foreign_path is not None
    assert decoder._foreign_path.batched == 0
    batch = _batch(VALUES, NOW_US + 1_000_000)
    out = decoder.decode(batch)
    assert decoder._foreign_path.batched == len(VALUES)
    expected = []
    for topic, payload, received in zip(
        batch.topics, batch.payloads, batch.received_us, strict=True
    ):
        result = reference.adapt(topic, payload, received)
        assert result is not None
        (tel,) = result.telemetry
        expected.append((tel.sequence, tel.event_id, tel.value[0], tel.t_us[0]))
    got = list(
        zip(out.msg_seq, out.msg_event_id, out.value.tolist(), out.t_us.tolist(), strict=True)
    )
    assert got == expected
    assert [round(v, 9) for v in out.value.tolist()] == [49.97, 10.0, 22.0, -10.0, 50.0]


def test_what_is_not_a_plain_number_still_goes_through_the_adapter() -> None:
    decoder, _ = _decoder()
    decoder.decode(_batch(VALUES, NOW_US))
    assert decoder._foreign_path is not None
    odd = [
        (f"{PLUG}/relay/0/power", b"49,97"),  # decimal comma
        (f"{PLUG}/relay/0/power", b" 12 "),  # whitespace
        (f"{PLUG}/relay/0/power", b"nan"),  # not a reading: skipped and counted
        (f"{PLUG}/relay/0", b"on"),  # the relay state (1.0)
        (f"{PLUG}/relay/0/power", b"1e999"),  # not finite after parsing: skipped
    ]
    out = decoder.decode(_batch(odd, NOW_US + 1_000_000))
    assert decoder._foreign_path.batched == 0
    assert out.value.tolist() == [49.97, 12.0, 1.0]
    assert out.adapter_skipped == 2
    assert len(out.adapter_ignored) == 2  # nan and 1e999: skipped, "not a number"


def test_a_burst_of_one_devices_values_in_one_millisecond_is_stored_whole() -> None:
    # Eight values of a device published together land in the same millisecond: each
    # is a message of its own and none may be taken for a duplicate of another (the
    # same topic and payload repeat, so the former hashed low bits always collided).
    config = parse_adapters({"adapter": [SHELLY]})
    observer = CountingObserver()
    shard = ShardProcessor(topics=SCHEME, adapters=config, observer=observer)
    tails = ["relay/0/power", "relay/0/energy", "sensor/temperature", "sensor/humidity"]
    ms = NOW_US // 1000 * 1000
    for tick in range(50):
        messages = [(f"{PLUG}/{tails[k % 4]}", b"21.5") for k in range(8)]
        shard.process([_batch(messages, ms + tick * 1000)])
    assert observer.counts["duplicates"] == 0
    assert observer.counts["readings"] == 400
