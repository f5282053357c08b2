import pytest

from contract.errors import ConfigError
from gateway.settings import load_settings


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
        ({"influx": {"api": "v3"}}, "influx.api", "'v1' or 'v2'"),
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

    monkeypatch.setattr(
        cli, "_cmd_up", lambda _a: (_ for _ in ()).throw(ModuleNotFoundError(name="rich"))
    )
    assert cli.main(["up"]) == 2
    assert "pip install 'sensorgate[gateway]'" in capsys.readouterr().err


def test_aggregates_store_four_lean_fields_unless_configured() -> None:
    from gateway.settings import load_settings

    assert load_settings().influx.aggregate_fields == ("count", "mean", "min", "max")
    every = ["count", "mean", "min", "max", "stddev", "first", "last"]
    assert load_settings(influx={"aggregate_fields": every}).influx.aggregate_fields == tuple(every)
