from pathlib import Path

import pytest

from contract.errors import ConfigError
from gateway.settings import load_settings, settings_env


def test_defaults_need_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("SENSORGATE_"):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.influx.api == "v1"
    assert settings.topics.prefix == "sg/v1"


def test_environment_overrides_nested_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENSORGATE_INFLUX__URL", "http://db.example:8086")
    monkeypatch.setenv("SENSORGATE_MQTT__PORT", "1884")
    settings = load_settings()
    assert settings.influx.url == "http://db.example:8086"
    assert settings.mqtt.port == 1884


@pytest.mark.parametrize(
    ("overrides", "field", "needle"),
    [
        ({"influx": {"api": "v4"}}, "influx.api", "'v1', 'v2' or 'v3'"),
        ({"mqtt": {"port": 70000}}, "mqtt.port", "less than or equal to 65535"),
        ({"topic_prefix": "sg/#"}, "topic_prefix", "'#'"),
        ({"influx": {"colour": "red"}}, "influx.colour", "Extra inputs"),
    ],
)
def test_bad_settings_name_the_field(overrides: dict, field: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(**overrides)
    assert info.value.field == field
    assert needle in info.value.reason


def test_secrets_are_not_printed() -> None:
    settings = load_settings(influx={"token": "s3cret"})
    assert "s3cret" not in repr(settings)


def test_a_command_without_its_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:

    from gateway import cli
    from gateway.cli import stack

    monkeypatch.setattr(
        stack, "_cmd_up", lambda _a: (_ for _ in ()).throw(ModuleNotFoundError(name="rich"))
    )
    assert cli.main(["up"]) == 2
    assert "pip install 'sensorgate[gateway]'" in capsys.readouterr().err


def test_aggregates_store_four_lean_fields_unless_configured() -> None:
    from gateway.settings import load_settings

    assert load_settings().influx.aggregate_fields == ("count", "mean", "min", "max")
    every = ["count", "mean", "min", "max", "stddev", "first", "last"]
    assert load_settings(influx={"aggregate_fields": every}).influx.aggregate_fields == tuple(every)


def test_a_config_file_is_read_and_the_environment_overrides_it(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gateway.settings import load_settings

    path = tmp_path / "gateway.toml"
    path.write_text('topic_prefix = "f/v1"\n[mqtt]\nport = 1999\n[stream]\nwindows = ["10s"]\n')
    settings = load_settings(config_file=path)
    assert (settings.topic_prefix, settings.mqtt.port, settings.stream.windows) == (
        "f/v1",
        1999,
        ("10s",),
    )
    monkeypatch.setenv("SENSORGATE_MQTT__PORT", "2000")
    assert load_settings(config_file=path).mqtt.port == 2000
    monkeypatch.setenv("SENSORGATE_CONFIG_FILE", str(path))
    assert load_settings().topic_prefix == "f/v1"


def test_a_bad_config_file_is_refused_naming_the_field_never_echoing_a_secret(
    tmp_path,
) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from contract.errors import ConfigError
    from gateway.settings import load_settings

    typo = tmp_path / "typo.toml"
    typo.write_text("[mqtt]\nprot = 5\n")
    with pytest.raises(ConfigError, match=r"mqtt\.prot"):
        load_settings(config_file=typo)
    secret = tmp_path / "secret.toml"
    secret.write_text('[influx]\npassword = ["hunter2"]\n')
    with pytest.raises(ConfigError, match=r"influx\.password") as caught:
        load_settings(config_file=secret)
    assert "hunter2" not in str(caught.value)
    broken = tmp_path / "broken.toml"
    broken.write_text("[mqtt\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config_file=broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "missing.toml")


def test_the_example_config_is_complete_and_valid(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import tomllib

    from gateway.cli.config import example_toml
    from gateway.settings import GatewaySettings, load_settings

    text = example_toml(GatewaySettings)
    doc = tomllib.loads(text)
    for section in ("mqtt", "influx", "ingest", "stream"):
        assert section in doc
    assert "SENSORGATE_MQTT__PORT" in text
    path = tmp_path / "example.toml"
    path.write_text(text)
    assert load_settings(config_file=path).model_dump() == load_settings().model_dump()


def test_each_role_gets_its_own_user_and_certificate_over_the_shared_tls() -> None:
    settings = load_settings(
        mqtt={
            "username": "sg-gateway",
            "password": "gw-pw",
            "tls": {"ca_file": "/ca.crt", "cert_file": "/gw.crt", "key_file": "/gw.key"},
            "operator": {
                "username": "sg-operator",
                "password": "op-pw",
                "cert_file": "/op.crt",
                "key_file": "/op.key",
            },
            "dashboard": {"username": "sg-dashboard"},
            "session_expiry_s": 3600,
        }
    ).mqtt
    gateway = settings.link_settings("gw-1")
    operator = settings.link_settings("op-1", role="operator")
    dashboard = settings.link_settings("dash-1", role="dashboard")
    assert (gateway.username, gateway.tls and gateway.tls.cert_file) == (
        "sg-gateway",
        Path("/gw.crt"),
    )
    assert operator.username == "sg-operator"
    assert operator.password is not None
    assert operator.password.get_secret_value() == "op-pw"
    assert operator.tls is not None
    assert (operator.tls.ca_file, operator.tls.cert_file) == (Path("/ca.crt"), Path("/op.crt"))
    # No certificate of its own: never the gateway's; its password is not the gateway's.
    assert dashboard.tls is not None
    assert dashboard.tls.cert_file is None
    assert (dashboard.username, dashboard.password) == ("sg-dashboard", None)
    assert {s.protocol for s in (gateway, operator, dashboard)} == {"5"}
    assert gateway.session_expiry_s == 3600, "a sink's session expires like the source's"


def test_a_role_certificate_without_tls_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(mqtt={"operator": {"cert_file": "/op.crt", "key_file": "/op.key"}})
    assert "mqtt.operator.cert_file needs mqtt.tls" in info.value.reason


def test_home_assistant_discovery_is_opt_in_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.settings import settings_env

    assert load_settings().ha_discovery.enabled is False
    monkeypatch.setenv("SENSORGATE_HA_DISCOVERY__ENABLED", "true")
    monkeypatch.setenv("SENSORGATE_HA_DISCOVERY__DISCOVERY_PREFIX", "ha/test")
    monkeypatch.setenv("SENSORGATE_STREAM__WINDOWS", '["10s", "1m"]')
    settings = load_settings()
    assert settings.ha_discovery.enabled
    assert settings.ha_discovery.discovery_prefix == "ha/test"
    assert settings.ha_window == "10s"  # the first window unless one is named
    assert settings_env(settings)["SENSORGATE_HA_DISCOVERY__ENABLED"] == "true"
    assert load_settings(ha_discovery={"window": "1m"}).ha_window == "1m"
    with pytest.raises(ConfigError, match=r"ha_discovery\.window.*one of stream\.windows"):
        load_settings(ha_discovery={"window": "5m"})
    with pytest.raises(ConfigError, match=r"ha_discovery\.discovery_prefix"):
        load_settings(ha_discovery={"discovery_prefix": "homeassistant/#"})


def test_mqtt_partitions_default_to_one_per_worker_of_the_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SENSORGATE_MQTT__PARTITIONS", raising=False)
    mqtt = load_settings().mqtt
    assert mqtt.partitions == "auto"
    assert mqtt.partition_count() == 1
    assert mqtt.partition_count(processes=3, workers=2) == 6
    assert mqtt.for_cluster(processes=2, workers=1).partitions == 2
    assert load_settings(mqtt={"partitions": None}).mqtt.partitions == "auto"


def test_explicit_mqtt_partitions_are_kept_whatever_the_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SENSORGATE_MQTT__PARTITIONS", "4")
    mqtt = load_settings().mqtt
    assert mqtt.partitions == 4
    assert mqtt.partition_count(processes=3, workers=2) == 4
    assert mqtt.for_cluster(processes=3, workers=2).partitions == 4
    monkeypatch.setenv("SENSORGATE_MQTT__PARTITIONS", "auto")
    assert load_settings().mqtt.partitions == "auto"


@pytest.mark.parametrize("value", [0, 257, "two", True, 2.5])
def test_bad_mqtt_partitions_are_refused_with_what_is_expected(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(mqtt={"partitions": value})
    assert info.value.field == "mqtt.partitions"
    assert '"auto" or a whole number from 1 to 256' in info.value.reason


def test_the_source_lists_the_partitions_resolved_for_the_cluster() -> None:
    from contract import TopicScheme
    from gateway.connectors.mqtt_source import MqttSource

    mqtt = load_settings(mqtt={"partitions": "auto"}).mqtt
    assert MqttSource(mqtt, TopicScheme()).list_parts() == ["0"]
    resolved = mqtt.for_cluster(processes=3, workers=1)
    assert MqttSource(resolved, TopicScheme()).list_parts() == ["0", "1", "2"]


def test_an_empty_share_group_means_plain_subscriptions_for_one_connection() -> None:
    settings = load_settings(mqtt={"share_group": ""})
    assert settings.mqtt.share_group is None
    assert settings_env(settings)["SENSORGATE_MQTT__SHARE_GROUP"] == ""
    with pytest.raises(ConfigError, match="partitions"):
        load_settings(mqtt={"share_group": "", "partitions": 2})
