"""Home Assistant MQTT discovery: configs learned, states read, templates refused.

Configs follow the examples of Home Assistant's MQTT integration documentation
(https://www.home-assistant.io/integrations/mqtt/ "Discovery examples": a sensor with
multiple measurement values, ``homeassistant/sensor/sensorBedroomT/config`` with
``{{ value_json.temperature }}`` on ``homeassistant/sensor/sensorBedroom/state``; the
abbreviated and ``~`` form; device-based discovery with ``cmps``) and Zigbee2MQTT's
own discovery messages (https://www.zigbee2mqtt.io/guide/usage/integrations/home_assistant.html).
"""

from __future__ import annotations

import json

import pytest
from adapter_kit import NOW, one, rows, run, units

from contract import TopicScheme
from dataflows.adapters import device_discovery, sensorgate_discovery, series_discovery
from dataflows.adapters.hatemplate import UNDEFINED, TemplateError, compile_template

BEDROOM_T = {
    "device_class": "temperature",
    "state_topic": "homeassistant/sensor/sensorBedroom/state",
    "unit_of_measurement": "°C",
    "value_template": "{{ value_json.temperature }}",
    "unique_id": "temp01ae",
    "device": {"identifiers": ["bedroom01ae"], "name": "Bedroom"},
}
BEDROOM_H = {
    "device_class": "humidity",
    "state_topic": "homeassistant/sensor/sensorBedroom/state",
    "unit_of_measurement": "%",
    "value_template": "{{ value_json.humidity }}",
    "unique_id": "hum01ae",
    "device": {"identifiers": ["bedroom01ae"], "name": "Bedroom"},
}


def ha(**options: object):
    return one("homeassistant", site="home", **options)


def test_single_component_configs_then_state():
    aset = ha()
    for obj, doc in (("sensorBedroomT", BEDROOM_T), ("sensorBedroomH", BEDROOM_H)):
        learned = run(aset, f"homeassistant/sensor/{obj}/config", json.dumps(doc))
        assert learned.ok
        assert learned.ignored == "discovery config learned"
    state = run(
        aset, "homeassistant/sensor/sensorBedroom/state", '{"temperature":23.20,"humidity":43.70}'
    )
    assert state.ok
    [tel] = state.telemetry
    assert (tel.site, tel.device) == ("home", "bedroom01ae")
    assert rows(state) == {
        ("sensorBedroomT", "temperature"): 23.2,
        ("sensorBedroomH", "humidity"): 43.7,
    }
    assert units(state)[("sensorBedroomT", "temperature")] == "°C"
    assert set(tel.t_us) == {NOW}  # Home Assistant states carry no time


def test_abbreviations_and_tilde_base_topic():
    aset = ha(state_filters=["kitchen/#"])
    config = {
        "~": "kitchen/climate",
        "name": "Kitchen temperature",
        "stat_t": "~/state",
        "val_tpl": "{{ value_json['temp'] | float | round(1) }}",
        "unit_of_meas": "°F",
        "dev_cla": "temperature",
        "uniq_id": "kt1",
        "dev": {"ids": "kitchen-node", "name": "Kitchen"},
    }
    assert run(aset, "homeassistant/sensor/kitchen-node/temp/config", json.dumps(config)).ok
    result = run(aset, "kitchen/climate/state", '{"temp": "71.6"}')
    assert result.ok
    [(sensor_metric, value)] = rows(result).items()
    assert sensor_metric == ("temp", "temperature")
    assert value == pytest.approx(22.0)  # 71.6 °F
    assert units(result)[sensor_metric] == "°C"
    assert result.telemetry[0].device == "kitchen-node"


def test_device_based_discovery_with_cmps():
    # The device-based example of the MQTT integration page (shared state_topic, qos).
    config = {
        "dev": {"ids": "ea334450945afc", "name": "Kitchen", "mf": "Bla electronics", "mdl": "xya"},
        "o": {"name": "bla2mqtt", "sw": "2.1"},
        "cmps": {
            "some_unique_component_id1": {
                "p": "sensor",
                "device_class": "temperature",
                "unit_of_measurement": "°C",
                "value_template": "{{ value_json.temperature}}",
                "unique_id": "temp01ae_t",
            },
            "some_unique_id2": {
                "p": "sensor",
                "device_class": "humidity",
                "unit_of_measurement": "%",
                "value_template": "{{ value_json.humidity}}",
                "unique_id": "temp01ae_h",
            },
            "bla_switch": {"p": "switch", "command_topic": "x/set", "unique_id": "sw1"},
        },
        "state_topic": "sensorBedroom/state",
        "qos": 2,
    }
    aset = ha(state_filters=["sensorBedroom/state"])
    learned = run(aset, "homeassistant/device/ea334450945afc/config", json.dumps(config))
    assert learned.ok
    assert learned.skipped == 1
    result = run(aset, "sensorBedroom/state", '{"temperature": 21.25, "humidity": 40}')
    assert rows(result) == {
        ("some_unique_component_id1", "temperature"): 21.25,
        ("some_unique_id2", "humidity"): 40.0,
    }


def test_zigbee2mqtt_binary_sensor_with_boolean_payloads():
    config = {
        "name": "Contact",
        "device_class": "door",
        "payload_on": False,
        "payload_off": True,
        "value_template": "{{ value_json.contact }}",
        "state_topic": "zigbee2mqtt/front_door",
        "unique_id": "0x00158d000a1b2c3d_contact_zigbee2mqtt",
        "device": {"identifiers": ["zigbee2mqtt_0x00158d000a1b2c3d"], "name": "front_door"},
    }
    aset = ha(state_filters=["zigbee2mqtt/+"])
    assert run(
        aset, "homeassistant/binary_sensor/0x00158d000a1b2c3d/contact/config", json.dumps(config)
    ).ok
    opened = run(aset, "zigbee2mqtt/front_door", '{"contact":false,"battery":91}')
    assert rows(opened) == {("contact", "door"): 1.0}  # payload_on is false: open
    closed = run(aset, "zigbee2mqtt/front_door", '{"contact":true}')
    assert rows(closed) == {("contact", "door"): 0.0}
    missing = run(aset, "zigbee2mqtt/front_door", '{"battery":90}')
    assert not missing.telemetry
    assert missing.skipped == 1
    assert missing.ok


def test_richer_templates_are_refused_with_a_clear_message():
    aset = ha()
    config = dict(BEDROOM_T, value_template="{{ value_json.t * 10 }}")
    result = run(aset, "homeassistant/sensor/bad/config", json.dumps(config))
    [error] = result.errors
    assert error.reason.value == "adapter_error"
    assert "cannot read '* 10'" in error.text
    assert "supported" in error.text
    # nothing was learned for it: its state topic is unknown
    state = run(aset, "homeassistant/sensor/sensorBedroom/state", '{"t": 1}')
    assert not state.telemetry


@pytest.mark.parametrize(
    ("template", "doc", "expected"),
    [
        ("{{ value_json.temperature }}", {"temperature": 21.5}, 21.5),
        ("{{value_json['DS18B20-1'].Temperature}}", {"DS18B20-1": {"Temperature": 3.5}}, 3.5),
        ('{{ value_json["a b"] }}', {"a b": 1}, 1),
        ("{{ value_json.x.y }}", {"x": {"y": "7"}}, "7"),
        ("{{ value_json.x.y | float }}", {"x": {"y": "7"}}, 7.0),
        ("{{ value_json.v | int }}", {"v": "12.9"}, 12.0),
        ("{{ value_json.v | float | round(2) }}", {"v": 1.23456}, 1.23),
        ("{{ value_json.v | round }}", {"v": 2.5}, 2),
        ("{{ value_json.v | float(0) }}", {"v": "n/a"}, 0.0),
        ("{{ value_json.list[1] }}", {"list": [1, 2]}, 2),
        ("{{- value_json.v -}}", {"v": 3}, 3),
        ("{{ value_json.missing }}", {"v": 3}, UNDEFINED),
    ],
)
def test_template_subset(template: str, doc: object, expected: object):
    assert compile_template(template).render(json.dumps(doc).encode(), doc) == expected


def test_value_template_on_a_plain_payload():
    assert compile_template("{{ value | float }}").render(b" 21.5 ", None) == 21.5


@pytest.mark.parametrize(
    "template",
    [
        "{{ value_json.t * 10 }}",
        "{% if value_json.t %}1{% endif %}",
        "{{ value_json.t | default(0) }}",
        "{{ value_json.t }} °C",
        "{{ states('sensor.x') }}",
        "{{ value_json.__class__ }}x",
        "{{ value.x }}",
        "{{ value_json[value_json.k] }}",
        "{{ value_json.t | round(1.5) }}",
    ],
)
def test_template_refusals(template: str):
    with pytest.raises(TemplateError, match=r"value_template|supported"):
        compile_template(template)


def test_float_without_default_on_text_is_an_error_for_that_entity():
    aset = ha()
    config = dict(BEDROOM_T, value_template="{{ value_json.temperature | float }}")
    run(aset, "homeassistant/sensor/sensorBedroomT/config", json.dumps(config))
    result = run(aset, "homeassistant/sensor/sensorBedroom/state", '{"temperature": "unavailable"}')
    [error] = result.errors
    assert "cannot convert" in error.text


def test_empty_config_removes_the_entity_and_unknown_state_topics_are_dead_letters():
    aset = ha(state_filters=["devices/#"])
    config = dict(BEDROOM_T, state_topic="devices/bedroom")
    run(aset, "homeassistant/sensor/sensorBedroomT/config", json.dumps(config))
    assert rows(run(aset, "devices/bedroom", '{"temperature": 20}'))
    removed = run(aset, "homeassistant/sensor/sensorBedroomT/config", b"")
    assert removed.ignored == "empty config: entity removed"
    result = run(aset, "devices/bedroom", '{"temperature": 20}')
    [error] = result.errors
    assert "no discovery config seen so far names 'devices/bedroom'" in error.text


def test_availability_topics_become_status():
    config = dict(
        BEDROOM_T,
        state_topic="bedroom/state",
        availability=[
            {"topic": "bedroom/avail", "payload_available": "up", "payload_not_available": "down"}
        ],
    )
    aset = ha(state_filters=["bedroom/#"])
    run(aset, "homeassistant/sensor/sensorBedroomT/config", json.dumps(config))
    up = run(aset, "bedroom/avail", "up")
    assert [(s.device, s.online) for s in up.status] == [("bedroom01ae", True)]
    down = run(aset, "bedroom/avail", "down")
    assert [(s.device, s.online) for s in down.status] == [("bedroom01ae", False)]


def test_learned_configs_survive_snapshot_and_restore():
    aset = ha()
    run(aset, "homeassistant/sensor/sensorBedroomT/config", json.dumps(BEDROOM_T))
    state = aset.snapshot()
    fresh = ha()
    fresh.restore(state)
    result = run(fresh, "homeassistant/sensor/sensorBedroom/state", '{"temperature": 19}')
    assert rows(result) == {("sensorBedroomT", "temperature"): 19.0}


def test_one_route_key_and_configs_not_shared():
    aset = ha(state_filters=["zigbee2mqtt/+"])
    assert aset.route_key("homeassistant/sensor/x/config") == "homeassistant:all"
    assert aset.route_key("zigbee2mqtt/lamp") == "homeassistant:all"
    assert aset.route_key("elsewhere/lamp") is None
    shared = {f.filter: f.shared for _, f in aset.filters()}
    assert shared == {"homeassistant/#": False, "zigbee2mqtt/+": True}


def test_sensorgate_publishes_discovery_for_its_alarms_and_aggregates():
    messages = sensorgate_discovery("plant 1", "press-7", [("env", "temperature", "°C")])
    topics = [m.topic for m in messages]
    assert topics == [
        "homeassistant/binary_sensor/sensorgate_plant_1_press-7/alarm/config",
        "homeassistant/sensor/sensorgate_plant_1_press-7/active_alarms/config",
        "homeassistant/sensor/sensorgate_plant_1_press-7/env_temperature_1m/config",
    ]
    assert all(m.retain for m in messages)
    alarm = json.loads(messages[0].payload)
    assert alarm["state_topic"] == "sg/v1/plant 1/press-7/alarms/active"
    assert alarm["device_class"] == "problem"
    mean = json.loads(messages[2].payload)
    assert mean["unit_of_measurement"] == "°C"
    assert mean["state_topic"] == "sg/v1/plant 1/press-7/aggregates/env/temperature"
    # our own adapter reads what the aggregate sensor names (a round trip of the subset)
    aset = ha(state_filters=["sg/v1/#"])
    run(aset, messages[2].topic, messages[2].payload)
    result = run(aset, mean["state_topic"], '{"mean": 21.5, "min": 20, "max": 23, "count": 60}')
    assert rows(result) == {("env_temperature_1m", "env_temperature_1m"): 21.5}


def test_sensorgate_discovery_follows_the_topic_scheme_and_names_no_device_availability():
    topics = TopicScheme("acme/sg")
    alarm, count = device_discovery("s", "d", topics=topics, discovery_prefix="ha")
    assert alarm.topic == "ha/binary_sensor/sensorgate_s_d/alarm/config"
    doc = json.loads(alarm.payload)
    assert (
        doc["state_topic"]
        == json.loads(count.payload)["state_topic"]
        == topics.alarms_active("s", "d")
    )
    # alarms are the gateway's state: an offline device is an alarm, not "unavailable"
    assert "availability" not in doc
    mean = series_discovery(
        "s", "d", "env", "t", topics=topics, discovery_prefix="ha", window="10s"
    )
    assert json.loads(mean.payload)["state_topic"] == topics.aggregates("s", "d", "env", "t")
    assert mean.topic == "ha/sensor/sensorgate_s_d/env_t_10s/config"


class _NoScan(dict):  # type: ignore[type-arg]
    """A dict that refuses to be walked: learning must look up, never scan."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        raise AssertionError("scanned every learned availability topic")

    keys = values = items = __iter__  # type: ignore[assignment]


def test_learning_a_config_does_not_scan_what_other_devices_taught():
    aset = ha(state_filters=["sim-ha/+/state", "sim-ha/+/availability"])
    adapter = aset.adapters[0]

    def config(device: str, j: int) -> tuple[str, bytes]:
        doc = {
            "stat_t": f"sim-ha/{device}/state",
            "val_tpl": f"{{{{ value_json.m{j} }}}}",
            "avty_t": f"sim-ha/{device}/availability",
            "dev": {"ids": [device]},
        }
        return f"homeassistant/sensor/{device}/m{j}/config", json.dumps(doc).encode()

    for i in range(50):
        for j in range(3):
            assert run(aset, *config(f"d{i}", j)).ok
    adapter._by_avty = _NoScan(adapter._by_avty)
    # A new device, a changed config and a removed one: each touches its own topics only.
    assert run(aset, *config("d50", 0)).ok
    assert run(aset, *config("d7", 1)).ok
    assert run(aset, "homeassistant/sensor/d8/m2/config", b"").ok
    online = run(aset, "sim-ha/d7/availability", "online")
    assert [(s.device, s.online) for s in online.status] == [("d7", True)]
    state = run(aset, "sim-ha/d50/state", '{"m0": 1.5}')
    assert rows(state) == {("m0", "m0"): 1.5}
