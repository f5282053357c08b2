"""The adapters file, dispatch, routing keys, sequences, ids, and no input crashes an adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
from adapter_kit import NOW, adapters, one, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import check_id
from contract.errors import ConfigError
from dataflows.adapters import AdapterSet, load_adapters
from dataflows.adapters.identity import sequence_of
from dataflows.adapters.ids import IdPolicy, IdRefused, sanitise_id

DEPLOY = Path(__file__).parents[3] / "deploy" / "adapters"


def test_every_deploy_example_loads():
    files = sorted(DEPLOY.glob("*.toml"))
    assert {f.stem for f in files} >= {
        "zigbee2mqtt",
        "tasmota",
        "shelly",
        "homeassistant",
        "sparkplug",
        "telegraf",
    }
    for path in files:
        aset = AdapterSet.from_file(path)
        assert len(aset) >= 1, path


@pytest.mark.parametrize(
    ("tables", "field", "words"),
    [
        (
            [
                {"name": "a", "kind": "telegraf"},
                {"name": "b", "kind": "shelly"},
                {"name": "c", "kind": "tasmota", "topic": "tele/x"},
            ],
            "adapter[2].topic",
            "%prefix%",
        ),
        ([{"name": "a", "kind": "mqtt-thing"}], "adapter[0].kind", "expected one of"),
        ([{"name": "a", "kind": "telegraf", "topik": "x"}], "adapter[0].topik", "Extra inputs"),
        ([{"name": "a/b", "kind": "telegraf"}], "adapter[0].name", "contains the character '/'"),
        (
            [{"name": "a", "kind": "telegraf", "timezone": "Mars/Base"}],
            "adapter[0].timezone",
            "IANA",
        ),
        (
            [{"name": "a", "kind": "telegraf"}, {"name": "a", "kind": "shelly"}],
            "adapter[1].name",
            "twice",
        ),
        ([{"name": "a", "kind": "telegraf", "topic": "t/#"}], "adapter[0].topic", "wildcards"),
        (
            [{"name": "a", "kind": "zigbee2mqtt", "devices": {"x": "s/d/e"}}],
            "adapter[0].devices",
            "site/device",
        ),
    ],
)
def test_bad_config_names_the_field(tables: list[dict[str, object]], field: str, words: str):
    with pytest.raises(ConfigError) as caught:
        adapters(*tables)
    assert caught.value.field == field
    assert words in caught.value.reason


def test_the_same_filter_in_two_adapters_is_refused():
    with pytest.raises(ConfigError, match="subscribes 'telegraf/#'"):
        adapters({"name": "a", "kind": "telegraf"}, {"name": "b", "kind": "telegraf"})


def test_unreadable_or_non_toml_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_adapters(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[adapter]\n")
    with pytest.raises(ConfigError, match="is not TOML"):
        load_adapters(bad)


def test_dispatch_in_file_order_and_native_topics_untouched():
    aset = adapters(
        {"name": "z2m", "kind": "zigbee2mqtt"},
        {"name": "tg", "kind": "telegraf"},
    )
    assert aset.route_key("zigbee2mqtt/kitchen") == "z2m:kitchen"
    assert aset.route_key("telegraf/web01/cpu") == "tg:web01"
    assert aset.route_key("sg/v1/site/dev/telemetry") is None
    assert aset.adapt("sg/v1/site/dev/telemetry", b"{}", NOW) is None
    device_part = aset.router_key_fn()
    assert device_part("sg/v1/site/dev/telemetry") == "sg/v1/site/dev"
    assert device_part("zigbee2mqtt/kitchen") == device_part("zigbee2mqtt/kitchen/availability")


def test_subscriptions_per_partition():
    aset = adapters({"name": "z2m", "kind": "zigbee2mqtt"})
    assert aset.subscriptions("sg", partition=0) == [
        "$share/sg/zigbee2mqtt/+",
        "zigbee2mqtt/+/availability",
        "zigbee2mqtt/bridge/state",
    ]
    assert aset.subscriptions("sg", partition=1) == ["$share/sg/zigbee2mqtt/+"]
    assert aset.subscriptions(None, partition=1) == []


def test_sequences_are_monotonic_in_time_and_fit_63_bits():
    assert sequence_of(NOW, 5) < sequence_of(NOW + 1000, 0)
    assert sequence_of(-5, 3) == 3
    assert 0 <= sequence_of(2**62, 2**20 - 1) < 2**63


def test_sequences_survive_a_restart_without_state():
    payload = '{"Time":"2025-10-09T08:50:00","AM2301":{"Temperature":24.6}}'
    before = run(one("tasmota"), "tele/plug/SENSOR", payload).telemetry[0]
    after = run(one("tasmota"), "tele/plug/SENSOR", payload, NOW + 3_600_000_000).telemetry[0]
    assert (before.sequence, before.event_id) == (after.sequence, after.event_id)


def test_id_policy():
    assert sanitise_id("a/b+c#d$e\x00f") == "a_b_c_d_e_f"
    assert sanitise_id("ends\\") == "ends_"
    long = sanitise_id("x" * 300)
    assert len(long) == 128
    assert long != sanitise_id("x" * 299)
    check_id("device", long)
    with pytest.raises(IdRefused, match="not an acceptable id"):
        IdPolicy("refuse")("device", "a/b")
    assert IdPolicy("refuse")("device", "plain name") == "plain name"


# -- no input crashes an adapter --------------------------------------------------------

ALL = adapters(
    {"name": "z2m", "kind": "zigbee2mqtt", "nested_names": True},
    {"name": "tas", "kind": "tasmota"},
    {"name": "sh", "kind": "shelly"},
    {"name": "ha", "kind": "homeassistant", "state_filters": ["hass/#"]},
    {"name": "sp", "kind": "sparkplug"},
    {"name": "tg", "kind": "telegraf"},
)
TOPICS = [
    "zigbee2mqtt/dev",
    "zigbee2mqtt/dev/availability",
    "zigbee2mqtt/bridge/state",
    "tele/dev/SENSOR",
    "tele/dev/STATE",
    "tele/dev/LWT",
    "shellies/dev/relay/0/power",
    "shellies/dev/online",
    "dev/events/rpc",
    "dev/status/switch:0",
    "homeassistant/sensor/dev/t/config",
    "homeassistant/device/dev/config",
    "hass/dev/state",
    "spBv1.0/g/NBIRTH/n",
    "spBv1.0/g/NDATA/n",
    "spBv1.0/g/NDEATH/n",
    "spBv1.0/g/DDATA/n/d",
    "telegraf/host/cpu",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


def _check(topic: str, payload: bytes) -> None:
    result = ALL.adapt(topic, payload, NOW)
    assert result is not None
    for error in result.errors:
        assert error.reason.value == "adapter_error"
        assert error.adapter in error.text
    for tel in result.telemetry:
        check_id("site", tel.site)
        check_id("device", tel.device)
        assert 0 <= tel.sequence < 2**63
        for sensor, metric, value, unit, t_us in tel.rows():
            check_id("sensor", sensor)
            check_id("metric", metric)
            assert value == value
            assert abs(value) != float("inf")
            assert len(unit) <= 32
            assert isinstance(t_us, int)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS), payload=st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(topic: str, payload: bytes):
    _check(topic, payload)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS), doc=json_values)
def test_arbitrary_json_never_crashes(topic: str, doc: object):
    import json

    _check(topic, json.dumps(doc).encode())


@settings(max_examples=200, deadline=None)
@given(
    topic=st.sampled_from(TOPICS),
    level=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=30),
    payload=st.sampled_from([b"1", b'{"temperature": 1}', b"online", b"m v=1"]),
)
def test_arbitrary_topic_levels_never_crash(topic: str, level: str, payload: bytes):
    mangled = topic.replace("dev", level, 1)
    if ALL.route_key(mangled) is not None:
        _check(mangled, payload)


def test_covers_follows_the_mqtt_wildcards() -> None:
    from dataflows.adapters.topicfilter import covers

    assert covers("a/#", "a/+/b")
    assert covers("a/+", "a/b")
    assert covers("+/+", "a/+")
    assert not covers("a/+", "a/#")
    assert not covers("a/b", "a/+")
    assert not covers("a/+", "a/b/c")
    assert covers("#", "x/y")


def test_overlapping_subscriptions_are_refused_and_ha_states_under_the_prefix_are_not_doubled() -> (
    None
):
    from contract.errors import ConfigError
    from dataflows.adapters.adapterset import AdapterSet
    from dataflows.adapters.config import parse_adapters

    ha = parse_adapters(
        {
            "adapter": [
                {
                    "name": "ha",
                    "kind": "homeassistant",
                    "topic": "homeassistant",
                    "state_filters": ["homeassistant/sensor/+/state", "esphome/#"],
                }
            ]
        }
    )
    assert [f.filter for _, f in AdapterSet(ha).filters()] == ["homeassistant/#", "esphome/#"]
    both = parse_adapters(
        {
            "adapter": [
                {"name": "t1", "kind": "telegraf", "topic": "telegraf"},
                {"name": "t2", "kind": "telegraf", "topic": "telegraf/site-b"},
            ]
        }
    )
    with pytest.raises(ConfigError, match="overlaps"):
        AdapterSet(both)


def test_protobuf_is_loaded_only_for_a_sparkplug_adapter():
    # protobuf's runtime is ~5 MB of every gateway's RSS: only Sparkplug needs it.
    import subprocess
    import sys

    code = (
        "import sys, gateway.cli.run, gateway.app;"
        " print(sorted(m for m in sys.modules if m.startswith('google')));"
        " from dataflows.adapters import AdapterSet;"
        f" AdapterSet.from_file({str(DEPLOY / 'sparkplug.toml')!r});"
        " print('google.protobuf' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True"], done.stdout
