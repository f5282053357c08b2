"""Reading the settings (:func:`load_settings`) and writing them back as variables."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    SecretStr,
    ValidationError,
)
from pydantic_settings import (
    SettingsConfigDict,
)

from contract.errors import ConfigError
from gateway.settings.gateway import GatewaySettings

__all__ = ["CONFIG_ENV", "load_settings", "settings_env"]


def settings_env(settings: GatewaySettings) -> dict[str, str]:
    """Return ``SENSORGATE_*`` variables that reproduce ``settings`` in a child process."""
    env: dict[str, str] = {}

    def flatten(prefix: str, value: object) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                flatten(
                    f"{prefix}__{name.upper()}" if prefix else name.upper(), getattr(value, name)
                )
        elif value is None:
            if prefix == "MQTT__SHARE_GROUP":  # none, not the default group: spelled ""
                env[f"SENSORGATE_{prefix}"] = ""
            return
        elif isinstance(value, SecretStr):
            env[f"SENSORGATE_{prefix}"] = value.get_secret_value()
        elif isinstance(value, tuple | list):
            env[f"SENSORGATE_{prefix}"] = json.dumps(list(value))
        elif isinstance(value, bool):
            env[f"SENSORGATE_{prefix}"] = "true" if value else "false"
        else:
            env[f"SENSORGATE_{prefix}"] = str(value)

    flatten("", settings)
    return env


CONFIG_ENV = "SENSORGATE_CONFIG_FILE"
"""Names the TOML config file when no ``--config`` is given."""

_SECRET_WORDS = ("password", "token", "secret", "key")


def _with_file(path: Path) -> type[GatewaySettings]:
    """Return a settings class that also reads ``path`` (below the environment)."""

    class FileSettings(GatewaySettings):
        model_config = SettingsConfigDict(**{**GatewaySettings.model_config, "toml_file": path})

    return FileSettings


def load_settings(*, config_file: Path | str | None = None, **overrides: Any) -> GatewaySettings:
    """Read the settings, raising :class:`ConfigError` with the first bad field.

    Sources, highest first: ``overrides``, ``SENSORGATE_*`` environment variables, the
    TOML ``config_file`` (or the file named by ``SENSORGATE_CONFIG_FILE``), defaults.
    The error names the field and the reason; the rejected value is shown only where
    it cannot be a secret. ``overrides`` are field values of any type (hence ``Any``):
    pydantic validates them, as it does the other sources.
    """
    path = config_file or os.environ.get(CONFIG_ENV) or None
    cls: type[GatewaySettings] = GatewaySettings
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError("config", f"{path} does not exist or is not a file")
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
        cls = _with_file(path)
    try:
        settings = cls(**overrides)
        settings.topics  # noqa: B018 - validates the prefix
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"]) or "(settings)"
        shown = "" if _may_be_secret(field) else f" (got {err.get('input')!r:.200})"
        raise ConfigError(field, f"{err['msg']}{shown}") from None
    except ConfigError:
        raise
    except Exception as exc:  # TopicError from the prefix
        raise ConfigError("topic_prefix", str(exc)) from None
    return settings


def _may_be_secret(field: str) -> bool:
    lowered = field.lower()
    return any(word in lowered for word in _SECRET_WORDS)
