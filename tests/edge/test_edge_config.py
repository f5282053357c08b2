"""Config: TOML plus SENSORGATE_ environment, refusals name the field; the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from edge_testkit import make_config

from contract.errors import ConfigError
from edge.cli import main
from edge.config import load_config, parse_remote_config

TOML = """
site = "plant-a"
device = "pi-017"

[mqtt]
host = "broker.example"
port = 8883
username = "pi-017"
password = "s3cret"

[mqtt.tls]
ca_file = "/etc/sensorgate/ca.pem"

[batch]
max_readings = 20

[outbox]
path = "{outbox}"

[[sensors]]
id = "cpu"
driver = "thermal"
interval_s = 5
options = {{ root = "{root}/sys/class/thermal" }}

[[sensors]]
id = "w1"
driver = "ds18b20"
interval_s = 30
options = {{ root = "{root}/sys/bus/w1/devices" }}

[[sensors]]
id = "sim"
driver = "simulated"
"""


def write(tmp_path: Path, root: Path, text: str = TOML) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text.format(outbox=tmp_path / "o.db", root=root))
    return path


def test_toml_with_env_overrides(
    tmp_path: Path, sysfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENSORGATE_MQTT__HOST", "10.0.0.5")
    monkeypatch.setenv("SENSORGATE_BATCH__MAX_AGE_S", "2.5")
    cfg = load_config(write(tmp_path, sysfs))
    assert cfg.mqtt.host == "10.0.0.5"  # env wins over the file
    assert cfg.mqtt.port == 8883  # the rest of the file's table stays
    assert cfg.batch.max_readings == 20
    assert cfg.batch.max_age_s == 2.5
    assert cfg.mqtt.password is not None
    assert "s3cret" not in repr(cfg)
    assert cfg.client_id == "pi-017"
    with pytest.raises(ValueError, match="frozen"):
        cfg.site = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("edit", "field", "reason"),
    [
        (("interval_s = 5", "interval_s = -5"), "sensors[0].interval_s", "or equal to 0.01"),
        (("port = 8883", "port = 70000"), "mqtt.port", "less than or equal to 65535"),
        (('device = "pi-017"', 'device = "pi/017"'), "device", "should match pattern"),
        (('site = "plant-a"', 'site = "plant-a"\nextra = 1'), "extra", "not permitted"),
        (('id = "w1"', 'id = "cpu"'), "sensors", "used twice"),
        (("max_readings = 20", "max_readings = 20000"), "batch.max_readings", "10000"),
    ],
)
def test_bad_config_names_the_field(
    tmp_path: Path, sysfs: Path, edit: tuple[str, str], field: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, sysfs, TOML.replace(*edit)))
    assert err.value.field == field
    assert reason in err.value.reason


def test_bad_env_override_names_the_field(
    tmp_path: Path, sysfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENSORGATE_OUTBOX__MAX_RATE", "-1")
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, sysfs))
    assert err.value.field == "outbox.max_rate"


def test_env_tables_and_lists_are_json_and_unrelated_variables_are_ignored(
    tmp_path: Path, sysfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sensors = [{"id": "only", "driver": "simulated", "interval_s": 2}]
    monkeypatch.setenv("SENSORGATE_SENSORS", json.dumps(sensors))
    monkeypatch.setenv("sensorgate_status__heartbeat_s", "15")  # names are case insensitive
    monkeypatch.setenv("SENSORGATE_REMOTE_CONFIG", "false")
    monkeypatch.setenv("SENSORGATE_NOT_A_KEY", "x")  # not ours: ignored
    cfg = load_config(write(tmp_path, sysfs))
    assert [s.id for s in cfg.sensors] == ["only"]
    assert cfg.status.heartbeat_s == 15
    assert cfg.remote_config is False
    assert cfg.mqtt.port == 8883


def test_env_with_bad_json_or_unknown_nested_key_names_the_field(
    tmp_path: Path, sysfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENSORGATE_SENSORS", "[{oops")
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, sysfs))
    assert err.value.field == "sensors"
    assert "not valid JSON" in err.value.reason
    monkeypatch.delenv("SENSORGATE_SENSORS")
    monkeypatch.setenv("SENSORGATE_MQTT__HOSTNAME", "typo")
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, sysfs))
    assert err.value.field == "mqtt.hostname"


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("site = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")


def test_remote_config_validation(tmp_path: Path) -> None:
    base = make_config(tmp_path)
    remote = parse_remote_config(b'{"intervals": {"sim": 0.5}, "batch": {"max_readings": 3}}', base)
    assert remote is not None
    live = base.with_remote(remote)
    assert live.sensor("sim").interval_s == 0.5
    assert live.batch.max_readings == 3
    assert live.batch.max_age_s == base.batch.max_age_s  # a partial table changes only its keys
    assert live.config_hash() != base.config_hash()
    assert parse_remote_config(b"", base) is None
    cases = [
        (b'{"intervals": {"nope": 1}}', "intervals.nope", "no sensor 'nope'"),
        (b'{"intervals": {"sim": 0}}', "intervals.sim", "greater than or equal to 0.01"),
        (b'{"batch": {"max_age_s": "soon"}}', "batch.max_age_s", "valid number"),
        (b'{"colour": "red"}', "colour", "not permitted"),
        (b"[1]", "(payload)", "JSON object"),
        (b"{", "(payload)", "not JSON"),
    ]
    for payload, field, reason in cases:
        with pytest.raises(ConfigError) as err:
            parse_remote_config(payload, base)
        assert (err.value.field, reason in err.value.reason) == (field, True), err.value


def test_cli_check_table_and_json(
    tmp_path: Path, sysfs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, sysfs)
    rc = main(["check", "--config", str(path)])
    out = capsys.readouterr().out
    assert rc == 1  # two DS18B20 probes fail their checks
    assert "config ok: site=plant-a device=pi-017" in out
    assert "thermal_zone0/temperature=48.312 degC" in out
    assert "28-0416b1e3a4ff/temperature=FAULT(CRC check failed (crc=a1 NO))" in out
    rc = main(["edge", "check", "--config", str(path), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1
    rows = {r["sensor"]: r for r in doc["sensors"]}
    assert rows["cpu"]["ok"] is True
    assert rows["sim"]["ok"] is True
    assert rows["w1"]["ok"] is False


def test_cli_refuses_bad_config_with_exit_2(
    tmp_path: Path, sysfs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, sysfs, TOML.replace('driver = "simulated"', 'driver = "simulatd"'))
    assert main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "sensors[2].driver: unknown driver 'simulatd'" in err
    path = write(tmp_path, sysfs, TOML.replace("port = 8883", "port = 0"))
    assert main(["run", "--config", str(path)]) == 2
    assert "mqtt.port" in capsys.readouterr().err


def test_cli_register_adds_edge_to_a_parent_parser() -> None:
    import argparse

    from edge.cli import register

    parser = argparse.ArgumentParser(prog="sensorgate")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["edge", "check", "--config", "x.toml", "--json"])
    assert args.json is True
    assert callable(args.func)


def test_cli_module_imports_stdlib_only() -> None:
    import subprocess
    import sys

    code = (
        "import sys, edge.cli; bad = [m for m in sys.modules if m.split('.')[0] in"
        " ('paho', 'pydantic', 'pydantic_settings', 'smbus2')]; print(bad); sys.exit(bool(bad))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_shipped_example_config_loads() -> None:
    from edge.config import load_config

    repo = Path(__file__).resolve().parents[2]
    config = load_config(repo / "deploy" / "edge" / "edge.example.toml")
    assert config.remote_config is True
    assert config.status.heartbeat_s == 60
