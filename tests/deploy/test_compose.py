"""deploy/compose: the compose file validates and every reference in it resolves.

No Docker engine runs here, so the stack is not started; what can be checked is:
the compose client's own validation (``docker compose config`` or ``docker-compose
config``, when installed), and that each image, build target, mount, secret, port,
variable and config key points at something that exists and agrees with the settings
models. The broker's config is run for real in test_broker_config.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from edge.config import AgentConfig, load_config
from gateway.cli import build_parser
from gateway.settings import GatewaySettings, load_settings
from tests.deploy.deploy_kit import (
    DEPLOY,
    NON_FIELD_VARIABLES,
    ROOT,
    field_of,
    is_secret,
    load_yaml_documents,
)

COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
GATEWAYS = ("gateway-0", "gateway-1")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (doc,) = load_yaml_documents(COMPOSE_FILE)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_the_compose_client_validates_the_file(tmp_path: Path) -> None:
    client = _compose_client()
    if client is None:
        pytest.skip("no compose client (Debian: apt-get install docker-compose)")
    result = subprocess.run(
        [*client, "-f", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=COMPOSE_DIR,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    resolved = subprocess.run(
        [*client, "-f", str(COMPOSE_FILE), "config", "--services"],
        cwd=COMPOSE_DIR,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert set(resolved.stdout.split()) == {
        "mosquitto",
        "influxdb",
        "influx-setup",
        "gateway-0",
        "gateway-1",
        "simulator",
        "edge",
        "grafana",
    }


def _dockerfile_stages() -> set[str]:
    text = (ROOT / "Dockerfile").read_text()
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.MULTILINE | re.IGNORECASE))


def test_images_are_pinned_or_built_from_this_repository(services: dict[str, Any]) -> None:
    stages = _dockerfile_stages()
    for name, svc in services.items():
        if "build" in svc:
            assert (COMPOSE_DIR / svc["build"]["context"]).resolve() == ROOT, name
            assert svc["build"]["target"] in stages, name
        else:
            repo, _, tag = svc["image"].partition(":")
            assert tag, f"{name}: pin a version of {repo}"
            assert tag != "latest", f"{name}: pin a version of {repo}"


def test_bind_mounts_exist_and_named_volumes_are_declared(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, svc in services.items():
        for mount in svc.get("volumes", []):
            source, target, *_mode = mount.split(":")
            if source.startswith("."):
                path = COMPOSE_DIR / source
                assert path.exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
            assert target.startswith("/"), f"{name}: {target}"
    assert used == declared


def test_secrets_are_files_made_by_init_secrets(
    compose: dict[str, Any], services: dict[str, Any], tmp_path: Path
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    declared = compose["secrets"]
    for name, spec in declared.items():
        assert set(spec) == {"file"}, f"secret {name} must come from a file"
        assert spec["file"] == f"./secrets/{name}"
    used = {
        (s if isinstance(s, str) else s["source"])
        for svc in services.values()
        for s in svc.get("secrets", [])
    }
    assert used == set(declared)

    subprocess.run(
        ["sh", str(COMPOSE_DIR / "init-secrets.sh"), str(tmp_path / "secrets")],
        check=True,
        capture_output=True,
    )
    made = {p.name for p in (tmp_path / "secrets").iterdir() if p.is_file()}
    assert made == set(declared)
    assert all((tmp_path / "secrets" / name).read_text().strip() for name in made)
    again = subprocess.run(
        ["sh", str(COMPOSE_DIR / "init-secrets.sh"), str(tmp_path / "secrets")],
        check=True,
        capture_output=True,
        text=True,
    )
    assert again.stdout == "", "a second run must keep every existing secret"


def _environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment", {})
    assert isinstance(env, dict)
    return {k: str(v) for k, v in env.items()}


def _secret_targets(svc: dict[str, Any]) -> dict[str, str]:
    """Secret source -> file name under /run/secrets."""
    out = {}
    for s in svc.get("secrets", []):
        if isinstance(s, str):
            out[s] = s
        else:
            out[s["source"]] = s.get("target", s["source"])
    return out


def _mounts(svc: dict[str, Any]) -> dict[str, str]:
    """Mount target -> source."""
    out = {}
    for mount in svc.get("volumes", []):
        source, target, *_ = mount.split(":")
        out[target] = source
    return out


@pytest.mark.parametrize("name", ["influx-setup", *GATEWAYS, "edge"])
def test_sensorgate_variables_and_secret_files_name_settings_fields(
    services: dict[str, Any], name: str
) -> None:
    model = AgentConfig if name == "edge" else GatewaySettings
    svc = services[name]
    for var in _environment(svc):
        if var.startswith("SENSORGATE_") and var not in NON_FIELD_VARIABLES:
            field_of(model, var)
    targets = [t for t in _secret_targets(svc).values() if t.startswith("SENSORGATE_")]
    assert targets, f"{name} gets no secret as a setting"
    for target in targets:
        assert is_secret(field_of(model, target)), f"{target} is not a secret field"


def _gateway_settings(svc: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> GatewaySettings:
    env = _environment(svc)
    config = env["SENSORGATE_CONFIG_FILE"]
    source = _mounts(svc)[config]
    for var, value in env.items():
        if var.startswith("SENSORGATE_") and var not in NON_FIELD_VARIABLES:
            monkeypatch.setenv(var, value)
    for target in _secret_targets(svc).values():
        if target.startswith("SENSORGATE_"):
            monkeypatch.setenv(target, "from-a-secret-file")
    return load_settings(config_file=COMPOSE_DIR / source)


def test_the_gateway_cluster_agrees_with_its_config(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    envs = [_environment(services[g]) for g in GATEWAYS]
    assert [int(e["SG_PROCESS_ID"]) for e in envs] == list(range(len(GATEWAYS)))
    size = {int(e["SG_CLUSTER_SIZE"]) for e in envs}
    assert size == {len(GATEWAYS)}
    addresses = {e["SG_CLUSTER_ADDRESSES"] for e in envs}
    assert addresses == {";".join(f"{g}:2101" for g in GATEWAYS)}, "process i is address i"
    states = set()
    for g in GATEWAYS:
        svc = services[g]
        settings = _gateway_settings(svc, monkeypatch)
        mounts = _mounts(svc)
        assert svc["command"] == ["sensorgate-node"]
        assert settings.recovery_partitions == len(GATEWAYS)
        assert settings.mqtt.partitions % len(GATEWAYS) == 0
        state = mounts["/var/lib/sensorgate"]
        states.add(state)
        assert not state.startswith("."), "the recovery state is a named volume"
        assert Path(settings.recovery_dir or "").is_relative_to("/var/lib/sensorgate")
        assert settings.influx.spill_dir.is_relative_to("/var/lib/sensorgate")
        assert str(settings.rules_file) in mounts
        assert mounts[str(settings.rules_file)].endswith("rules.toml")
        # Every process listens on SG_METRICS_PORT (sensorgate-node), checked there.
        port = int(_environment(svc)["SG_METRICS_PORT"])
        assert port == settings.metrics_port
        assert settings.metrics_host == "0.0.0.0"
        assert f"127.0.0.1:{port}/healthz" in " ".join(svc["healthcheck"]["test"])
        assert svc["depends_on"]["influx-setup"]["condition"] == "service_completed_successfully"
    assert len(states) == len(GATEWAYS), "one recovery volume per process"


def _mosquitto_listeners() -> dict[int, list[str]]:
    listeners: dict[int, list[str]] = {}
    current: list[str] | None = None
    for raw in (COMPOSE_DIR / "mosquitto" / "mosquitto.conf").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("listener "):
            current = listeners.setdefault(int(line.split()[1]), [])
        elif current is not None:
            current.append(line)
    return listeners


def _broker_users(services: dict[str, Any]) -> dict[str, str]:
    pairs = _environment(services["mosquitto"])["SG_MQTT_USERS"].split()
    return dict(pair.split(":", 1) for pair in pairs)


def test_the_broker_has_a_password_for_every_user_and_tls_for_devices(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    mosquitto = services["mosquitto"]
    users = _broker_users(services)
    mounted = _secret_targets(mosquitto)
    assert set(users.values()) <= set(mounted)
    listeners = _mosquitto_listeners()
    assert set(listeners) == {1883, 8883}
    assert "use_username_as_clientid true" in listeners[8883]
    assert any(line.startswith("certfile ") for line in listeners[8883])
    assert "use_username_as_clientid true" not in listeners[1883]
    published = {p.split(":")[-1] for p in mosquitto["ports"]}
    assert published == {"8883"}, "only the TLS listener leaves the host"
    assert _mounts(mosquitto)["/mosquitto/config/sensorgate.acl"] == "../edge/mosquitto-acl.conf"
    acl = (DEPLOY / "edge" / "mosquitto-acl.conf").read_text()
    settings = _gateway_settings(services["gateway-0"], monkeypatch)
    assert settings.mqtt.host == "mosquitto"
    assert settings.mqtt.port in listeners
    assert settings.mqtt.username in users
    assert f"user {settings.mqtt.username}\n" in acl
    assert "user sg-simulator\n" in acl
    for secret in ("mqtt_ca_crt", "mqtt_broker_crt", "mqtt_broker_key"):
        assert secret in mounted
    start = (COMPOSE_DIR / "mosquitto" / "start.sh").read_text()
    for secret in ("mqtt_ca_crt", "mqtt_broker_crt", "mqtt_broker_key"):
        assert f'"$secrets/{secret}"' in start


def test_influxdb_is_set_up_for_the_gateway(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    influx = _environment(services["influxdb"])
    assert influx["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    mounted = _secret_targets(services["influxdb"])
    for var in ("USERNAME", "PASSWORD", "ADMIN_TOKEN"):
        path = influx[f"DOCKER_INFLUXDB_INIT_{var}_FILE"]
        assert path.removeprefix("/run/secrets/") in mounted.values(), var
        assert f"DOCKER_INFLUXDB_INIT_{var}" not in influx, "secrets come from files"
    settings = _gateway_settings(services["gateway-0"], monkeypatch)
    assert settings.influx.api == "v2"
    assert settings.influx.url == "http://influxdb:8086"
    assert settings.influx.org == influx["DOCKER_INFLUXDB_INIT_ORG"]
    assert settings.influx.bucket == influx["DOCKER_INFLUXDB_INIT_BUCKET"]
    # The gateway's token is the one InfluxDB was set up with.
    gateway_token = {v: k for k, v in _secret_targets(services["gateway-0"]).items()}
    assert gateway_token["SENSORGATE_INFLUX__TOKEN"] == "influx_token"
    setup = services["influx-setup"]
    args = build_parser().parse_args(setup["command"][1:])
    assert (args.command, args.influx_command) == ("influx", "setup")
    assert _mounts(setup)[_environment(setup)["SENSORGATE_CONFIG_FILE"]] == (
        "./config/gateway.toml"
    )
    assert services["influx-setup"]["depends_on"]["influxdb"]["condition"] == "service_healthy"


def test_the_edge_agent_speaks_tls_as_a_device(services: dict[str, Any]) -> None:
    edge = services["edge"]
    mounts = _mounts(edge)
    config = load_config(COMPOSE_DIR / mounts["/etc/sensorgate/edge.toml"])
    listeners = _mosquitto_listeners()
    assert config.mqtt.host == "mosquitto"
    assert "use_username_as_clientid true" in listeners[config.mqtt.port]
    assert config.mqtt.username == f"{config.site}/{config.device}", "the ACL's %u"
    users = _broker_users(services)
    assert users[config.mqtt.username] in _secret_targets(services["mosquitto"])
    assert _secret_targets(edge)[users[config.mqtt.username]] == "SENSORGATE_MQTT__PASSWORD"
    assert config.mqtt.tls is not None
    ca = str(config.mqtt.tls.ca_file).removeprefix("/run/secrets/")
    assert ca in _secret_targets(edge).values()
    assert config.outbox.path.is_relative_to("/var/lib/sensorgate")
    assert not mounts["/var/lib/sensorgate"].startswith(".")
    assert {s.driver for s in config.sensors} == {"system", "simulated"}


def test_the_simulated_fleet_uses_a_broker_user(services: dict[str, Any]) -> None:
    sim = services["simulator"]
    assert sim["command"][:2] == ["sh", "-c"]
    argv = shlex.split(sim["command"][2].replace("$$", "$"))
    assert argv[0] == "exec"
    args = build_parser().parse_args(argv[2:])
    assert args.command == "simulate"
    assert args.host == "mosquitto"
    assert args.port in _mosquitto_listeners()
    users = _broker_users(services)
    assert args.username in users
    assert f"/run/secrets/{users[args.username]}" in args.password
    assert users[args.username] in _secret_targets(sim)


def test_grafana_uses_the_shipped_dashboards_and_the_token_file(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    grafana = services["grafana"]
    env = _environment(grafana)
    mounts = _mounts(grafana)
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"].removeprefix("/run/secrets/") in (
        _secret_targets(grafana).values()
    )
    assert mounts["/etc/grafana/provisioning/dashboards"] == "../grafana/provisioning/dashboards"
    provider = load_yaml_documents(DEPLOY / "grafana/provisioning/dashboards/sensorgate.yaml")[0]
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert mounts[dashboards_path] == "../grafana/dashboards"

    (datasources,) = load_yaml_documents(COMPOSE_DIR / "grafana/datasources/sensorgate.yaml")
    (ds,) = datasources["datasources"]
    shipped = load_yaml_documents(DEPLOY / "grafana/provisioning/datasources/sensorgate.yaml")[0]
    assert ds["uid"] == shipped["datasources"][0]["uid"]
    for dashboard in (DEPLOY / "grafana/dashboards").glob("*.json"):
        uids = _datasource_uids(json.loads(dashboard.read_text()))
        assert uids == {ds["uid"]}, dashboard.name
    token_file = re.search(r"\$__file\{([^}]+)\}", ds["secureJsonData"]["httpHeaderValue1"])
    assert token_file is not None
    assert token_file.group(1).removeprefix("/run/secrets/") in _secret_targets(grafana).values()
    assert ds["url"] == "${SENSORGATE_INFLUX_URL}"
    settings = _gateway_settings(services["gateway-0"], monkeypatch)
    assert env["SENSORGATE_INFLUX_URL"] == settings.influx.url
    assert env["SENSORGATE_INFLUX_DATABASE"] == settings.influx.database


def _datasource_uids(node: Any) -> set[str]:
    """The uids of every ``"datasource": {"uid": ...}`` in a dashboard."""
    found: set[str] = set()
    if isinstance(node, dict):
        ds = node.get("datasource")
        uid = ds.get("uid") if isinstance(ds, dict) else None
        # "-- Grafana --" is Grafana's built-in source (annotations), "${...}" a variable.
        if isinstance(uid, str) and not uid.startswith(("$", "-- ")):
            found.add(uid)
        for value in node.values():
            found |= _datasource_uids(value)
    elif isinstance(node, list):
        for value in node:
            found |= _datasource_uids(value)
    return found


def test_config_files_hold_no_secret() -> None:
    for path in [*(COMPOSE_DIR / "config").glob("*.toml")]:
        data = tomllib.loads(path.read_text())
        flat = repr(data).lower()
        for word in ("password", "token"):
            assert f"'{word}'" not in flat, f"{path.name} sets a {word}"
