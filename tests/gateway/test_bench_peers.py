"""The peers' pure parts: Node-RED's flow and settings, the naive script's lines, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract.errors import ConfigError, ServiceError
from gateway.bench import nodered
from gateway.bench.naive_peer import to_lines
from gateway.bench.peers import PEERS, make_peers
from gateway.bench.workload import Workload, render_burst
from gateway.cli import build_parser, run_command

FLOW = nodered.flow(
    mqtt_port=18830, influx_port=18086, database="bench", topic="sg/v1/+/+/telemetry"
)


def _node(node_type: str) -> dict[str, object]:
    [node] = [n for n in FLOW if n["type"] == node_type]
    return node


def test_the_flow_is_mqtt_in_json_function_influxdb_batch() -> None:
    mqtt_in, json_node = _node("mqtt in"), _node("json")
    function, batch = _node("function"), _node("influxdb batch")
    assert mqtt_in["wires"] == [[json_node["id"]]]
    assert json_node["wires"] == [[function["id"]]]
    assert function["wires"] == [[batch["id"]]]
    assert batch["wires"] == []
    assert len({n["id"] for n in FLOW}) == len(FLOW)


def test_the_mqtt_input_subscribes_with_qos_1_to_every_device() -> None:
    mqtt_in, broker = _node("mqtt in"), _node("mqtt-broker")
    assert mqtt_in["topic"] == "sg/v1/+/+/telemetry"
    assert mqtt_in["qos"] == "1"
    assert mqtt_in["broker"] == broker["id"]
    assert (broker["broker"], broker["port"]) == ("127.0.0.1", "18830")


def test_the_influxdb_nodes_write_to_influxdb_1x_with_ms_precision() -> None:
    batch, server = _node("influxdb batch"), _node("influxdb")
    assert batch["influxdb"] == server["id"]
    assert batch["precision"] == "ms"
    assert server["influxdbVersion"] == "1.x"
    assert (server["hostname"], server["port"], server["database"]) == (
        "127.0.0.1",
        "18086",
        "bench",
    )


def test_the_function_maps_each_reading_to_a_point() -> None:
    code = str(_node("function")["func"])
    for piece in (
        'measurement: "readings"',
        "site: site",
        "device: device",
        "sensor: r.sensor",
        "metric: r.metric",
        "value: r.value",
        "new Date(r.time)",
    ):
        assert piece in code


def test_settings_run_headless_on_loopback(tmp_path: Path) -> None:
    text = nodered.settings_js(ui_port=12345, user_dir=tmp_path)
    settings = json.loads(text.removeprefix("module.exports = ").rstrip().rstrip(";"))
    assert settings["httpAdminRoot"] is False
    assert settings["uiHost"] == "127.0.0.1"
    assert settings["uiPort"] == 12345
    assert settings["userDir"] == str(tmp_path)


def test_missing_node_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodered.shutil, "which", lambda _name: None)
    with pytest.raises(ServiceError, match="apt-get install -y nodejs npm"):
        nodered.ensure_installed(tmp_path)


def test_the_cache_folder_follows_xdg(tmp_path: Path) -> None:
    assert nodered.default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == (
        tmp_path / "sensorgate" / "node-red"
    )


def test_the_naive_script_writes_one_line_per_reading() -> None:
    burst = render_burst(Workload(devices=2, readings_per_message=10, total=20))
    lines = to_lines(burst.topics[0], burst.payloads[0]).split("\n")
    assert len(lines) == 10
    head, value, ms = lines[1].split(" ")
    assert head == "readings,site=bench,device=dev-000000,sensor=s1,metric=m1"
    assert value.startswith("value=")
    assert abs(int(ms) - (burst.base_us + 1_000) / 1_000) <= 0.5  # the reading's time, in ms


def test_every_peer_has_a_definition(tmp_path: Path) -> None:
    peers = make_peers(list(PEERS), nodered_cache=tmp_path)
    assert [p.name for p in peers] == list(PEERS)
    assert [p.name for p in peers if p.is_ceiling] == ["influxd"]
    assert [p.name for p in peers if p.measures_latency] == ["sensorgate", "sensorgate-storage"]


def test_bench_refuses_an_unknown_peer() -> None:
    args = build_parser().parse_args(["bench", "--peers", "naive,victoria", "--rounds", "1"])
    assert run_command(args) == 2


def test_bench_has_help_and_defaults() -> None:
    args = build_parser().parse_args(["bench"])
    assert (args.scenario, args.rounds, args.latency, args.idle) == ("peer", 3, True, 30.0)
    assert args.out == "reports/bench.json"
    assert args.chart == "reports/bench.png"


def test_bench_refuses_a_bad_workload_knob() -> None:
    args = build_parser().parse_args(["bench", "--total", "1001", "--peers", "naive"])
    with pytest.raises(ConfigError, match="total"):
        args.func(args)
