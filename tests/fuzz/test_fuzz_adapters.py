"""Each adapter family over payloads of its own shape with hostile values.

Arbitrary bytes and arbitrary JSON are refused at the first byte or field (the adapter
tests cover that); here every family gets the payloads it expects, with numbers no double
holds, NaN and inf spelled every way, huge integers, times at the edges, long and
strange strings. An adapter maps, skips, ignores or files an ``adapter_error``; it never
raises, and what it maps is finite with valid ids. The same payloads then go through a
shard with all six adapters: it never raises and writes no NaN or inf.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from fuzz_kit import NOW, edge_times, finite_floats, hostile_text, number_texts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import TopicScheme, check_id
from dataflows.adapters import parse_adapters
from dataflows.adapters.adapterset import AdapterSet
from dataflows.adapters.sparkplug import sparkplug_b_pb2 as pb
from dataflows.batch import MessageBatch
from dataflows.columns import EncodedPoints
from dataflows.eventclock import FakeClock, to_us
from dataflows.shard import ShardProcessor
from gateway.influx.encoder import LineProtocolEncoder

NOW_US = to_us(NOW)
CONFIG = parse_adapters(
    {
        "adapter": [
            {"name": "z2m", "kind": "zigbee2mqtt"},
            {"name": "tas", "kind": "tasmota"},
            {"name": "sh", "kind": "shelly"},
            {"name": "ha", "kind": "homeassistant", "state_filters": ["hass/#"]},
            {"name": "sp", "kind": "sparkplug"},
            {"name": "tg", "kind": "telegraf"},
        ]
    }
)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A JSON number as text: any double, or text no double holds.
numbers = st.one_of(finite_floats.map(repr), number_texts, st.integers(-(2**70), 2**70).map(str))
values = st.one_of(
    numbers,
    st.sampled_from(['"NaN"', '"inf"', '"-Infinity"', '"12.5"', "true", "null", "[]", "{}"]),
    hostile_text.map(json.dumps),
)
names = st.one_of(
    st.sampled_from(["temperature", "humidity", "power", "Temperature"]), hostile_text
)


def _object(pairs: list[tuple[str, str]]) -> str:
    """A JSON object from (key, JSON text of the value) pairs (duplicate keys kept)."""
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in pairs) + "}"


objects = st.lists(st.tuples(names, values), max_size=6).map(_object)


@st.composite
def zigbee2mqtt(draw: Any) -> tuple[str, bytes]:
    device = draw(st.one_of(st.just("kitchen"), hostile_text.filter(lambda s: "/" not in s)))
    body = draw(objects)
    if draw(st.booleans()):
        body = (
            body[:-1]
            + (", " if body != "{}" else "")
            + f'"last_seen": {json.dumps(draw(edge_times))}}}'
        )
    return f"zigbee2mqtt/{device}", body.encode()


@st.composite
def tasmota(draw: Any) -> tuple[str, bytes]:
    sensor = draw(st.sampled_from(["DS18B20", "AM2301", "BME280", "ENERGY", "ANALOG"]))
    inner = draw(objects)
    time = json.dumps(draw(st.one_of(edge_times, st.just("2026-11-30T12:00:00"))))
    body = f'{{"Time": {time}, {json.dumps(sensor)}: {inner}, "TempUnit": {draw(values)}}}'
    return "tele/dev/SENSOR", body.encode()


@st.composite
def shelly(draw: Any) -> tuple[str, bytes]:
    if draw(st.booleans()):  # Gen1: one value per topic, as text
        leaf = draw(st.sampled_from(["relay/0/power", "relay/0/energy", "sensor/temperature"]))
        return f"shellies/dev/{leaf}", draw(values).encode()
    params = _object([("switch:0", draw(objects)), ("ts", draw(numbers))])
    body = f'{{"src": "dev", "method": "NotifyStatus", "params": {params}}}'
    return "dev/events/rpc", body.encode()


@st.composite
def homeassistant(draw: Any) -> tuple[str, bytes]:
    if draw(st.booleans()):
        config = {
            "state_topic": "hass/dev/state",
            "value_template": draw(st.sampled_from(["{{ value_json.t }}", "{{ value }}", "{{"])),
            "unit_of_measurement": draw(hostile_text),
            "device": {"identifiers": [draw(hostile_text)], "name": draw(hostile_text)},
            "unique_id": draw(hostile_text),
        }
        return "homeassistant/sensor/dev/t/config", json.dumps(config).encode()
    return "hass/dev/state", draw(st.one_of(objects, values)).encode()


@st.composite
def telegraf(draw: Any) -> tuple[str, bytes]:
    if draw(st.booleans()):
        field = draw(st.sampled_from(["usage", "value", "a b", "x=y"]))
        number = draw(numbers)
        stamp = draw(st.one_of(st.integers(-(2**63), 2**63 - 1), st.just(NOW_US * 1000)))
        line = f"cpu,host=h {field}={number} {stamp}"
        return "telegraf/h/cpu", line.encode()
    doc = _object(
        [
            ("name", '"cpu"'),
            ("tags", '{"host": "h"}'),
            ("fields", draw(objects)),
            ("timestamp", draw(numbers)),
        ]
    )
    return "telegraf/h/cpu", doc.encode()


@st.composite
def sparkplug(draw: Any) -> tuple[str, bytes]:
    msg = pb.Payload()
    msg.timestamp = draw(st.integers(0, 2**64 - 1))
    if draw(st.booleans()):
        msg.seq = draw(st.integers(0, 2**64 - 1))
    for _ in range(draw(st.integers(0, 4))):
        m = msg.metrics.add()
        if draw(st.booleans()):
            m.name = draw(hostile_text)
        if draw(st.booleans()):
            m.alias = draw(st.integers(0, 2**64 - 1))
        m.datatype = draw(st.integers(0, 40))
        kind = draw(st.integers(0, 3))
        if kind == 0:
            m.double_value = draw(st.floats())  # NaN and inf too: the wire allows them
        elif kind == 1:
            m.float_value = draw(st.floats(width=32))
        elif kind == 2:
            m.long_value = draw(st.integers(0, 2**64 - 1))
        else:
            m.string_value = draw(hostile_text)
    kind = draw(st.sampled_from(["NBIRTH", "NDATA", "DBIRTH", "DDATA", "NDEATH"]))
    topic = f"spBv1.0/g/{kind}/n" + ("/d" if kind.startswith("D") else "")
    raw = msg.SerializeToString()
    if draw(st.integers(0, 5)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]
    return topic, raw


families = {
    "zigbee2mqtt": zigbee2mqtt(),
    "tasmota": tasmota(),
    "shelly": shelly(),
    "homeassistant": homeassistant(),
    "telegraf": telegraf(),
    "sparkplug": sparkplug(),
}
any_family = st.one_of(*families.values())


def _check(aset: AdapterSet, topic: str, payload: bytes) -> None:
    result = aset.adapt(topic, payload, NOW_US)
    if result is None:
        return
    for error in result.errors:
        assert error.reason.value == "adapter_error"
    for tel in result.telemetry:
        check_id("site", tel.site)
        check_id("device", tel.device)
        assert 0 <= tel.sequence < 2**63
        for sensor, metric, value, unit, t_us in tel.rows():
            check_id("sensor", sensor)
            check_id("metric", metric)
            assert math.isfinite(value)
            assert len(unit) <= 32
            assert isinstance(t_us, int)


def _family_test(name: str) -> Any:
    @FUZZ
    @given(messages=st.lists(families[name], min_size=1, max_size=6))
    def test(messages: list[tuple[str, bytes]]) -> None:
        aset = AdapterSet(CONFIG)  # stateful (births, aliases): a sequence per example
        for topic, payload in messages:
            _check(aset, topic, payload)

    test.__name__ = f"test_{name}_adapter_never_raises_on_hostile_values"
    return test


test_zigbee2mqtt = _family_test("zigbee2mqtt")
test_tasmota = _family_test("tasmota")
test_shelly = _family_test("shelly")
test_homeassistant = _family_test("homeassistant")
test_telegraf = _family_test("telegraf")
test_sparkplug = _family_test("sparkplug")

_NON_FINITE = re.compile(rb"(?i)=-?(nan|inf)")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(any_family, min_size=1, max_size=12))
def test_a_shard_with_every_adapter_takes_hostile_foreign_traffic(
    messages: list[tuple[str, bytes]],
) -> None:
    clock = FakeClock(NOW_US)
    proc = ShardProcessor(
        topics=TopicScheme(), encoder=LineProtocolEncoder(), clock=clock, adapters=CONFIG
    )
    batch = MessageBatch()
    for topic, payload in messages:
        batch.append(topic, payload, NOW_US)
    for out in (proc.process([batch]), proc.tick()):
        for points in out.points:
            assert isinstance(points, EncodedPoints)
            assert not _NON_FINITE.search(points.body)
        assert len(out.deadletters) <= len(messages)
