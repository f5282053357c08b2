"""Scenario files: the shipped ones load; bad ones are refused naming field and reason."""

from __future__ import annotations

import textwrap

import pytest
from sim_helpers import run_memory

from contract import TopicScheme
from contract.errors import ConfigError
from simulators.scenario import (
    build_devices,
    builtin_scenarios,
    load_scenario,
    validate_scenario,
)

GOOD = """
name = "t"
seed = 3
interval_s = 5
duration_s = 600
speed = "max"
start = 2026-01-01T00:00:00Z

[device_types.box]
sensor = "probe"
metrics.temperature = { mean = -18 }
metrics.door = {}
metrics.level = { model = "pressure", lower = 0, mean = 50, upper = 100, unit = "%" }

[[sites]]
id = "w1"
devices = [{ type = "box", count = 3, name = "box-{n}" }]

[[anomalies]]
kind = "stuck"
device = "box-1"
metric = "temperature"
at_s = 100
duration_s = 60
"""


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_scenarios_load_and_run():
    shipped = builtin_scenarios()
    assert {"demo", "factory", "cold-chain"} <= set(shipped)
    for name, path in shipped.items():
        scenario = load_scenario(path)
        assert scenario.device_count > 0, name
        short = scenario.override(duration_s=300.0, speed="max")
        events, _labels, report = run_memory(short)
        assert report.events == len(events) > 0, name
    assert load_scenario("demo").name == "demo"  # by name, too


def test_a_good_scenario_builds_its_devices(tmp_path):
    scenario = load_scenario(write(tmp_path, GOOD))
    devices = build_devices(scenario, TopicScheme(), sequence_start=0)
    assert [d.device for d in devices] == ["box-0", "box-1", "box-2"]
    assert devices[0].metrics == ("temperature", "door", "level")
    assert devices[1].topic == "sg/v1/w1/box-1/telemetry"
    events, labels, _ = run_memory(scenario)
    assert len(events) == 3 * 120
    assert [(lab.device, lab.kind) for lab in labels] == [("box-1", "stuck")]
    level = {r.unit for e in events for r in e.data.readings if r.metric == "level"}
    assert level == {"%"}


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (("count = 3", "count = 0"), "sites[0].devices[0].count", "greater than or equal to 1"),
        (('type = "box"', 'type = "crate"'), "sites[0].devices[0].type", "unknown device type"),
        (
            ("mean = -18", "mean = 'cold'"),
            "device_types.box.metrics.temperature.mean",
            "valid number",
        ),
        (("mean = -18", "meen = -18"), "device_types.box.metrics.temperature.meen", "Extra inputs"),
        (("metrics.door = {}", "metrics.gate = {}"), "device_types.box.metrics", "needs a 'model'"),
        (('speed = "max"', 'speed = "warp"'), "speed", "expected a speed"),
        (('id = "w1"', 'id = "w/1"'), "sites[0].id", "contains the character '/'"),
        (('name = "box-{n}"', 'name = "box"'), "sites[0].devices[0]", "the same id"),
        (
            ('metric = "temperature"', 'metric = "humidity"'),
            "anomalies[0].metric",
            "no device type has a metric",
        ),
        (('kind = "stuck"', 'kind = "melt"'), "anomalies[0].kind", "Input should be"),
        (("interval_s = 5", "interval_s = -5"), "interval_s", "greater than 0"),
        (("lower = 0,", "lower = 70,"), "device_types.box.metrics.level", "lower < mean < upper"),
    ],
)
def test_bad_scenarios_are_refused_with_field_and_reason(tmp_path, change, field, reason):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert info.value.field == f"{path}: {field}"
    assert reason in info.value.reason


def test_unreadable_files_and_bad_toml_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_scenario(write(tmp_path, "name = \n"))
    with pytest.raises(ConfigError) as info:
        validate_scenario({"device_types": {}, "sites": []})
    assert info.value.field == "scenario: device_types"


def test_override_validates_again(tmp_path):
    scenario = load_scenario(write(tmp_path, GOOD))
    assert scenario.override(seed=9, duration_s=None).seed == 9
    with pytest.raises(ConfigError, match="interval_s"):
        scenario.override(interval_s=0)
