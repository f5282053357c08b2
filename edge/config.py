"""The agent's configuration: a TOML file, ``SENSORGATE_`` environment overrides, frozen models.

Precedence, highest first: environment (``SENSORGATE_MQTT__HOST=...``, nested with
``__``), then the TOML file, then the defaults here. Anything refused is a
:class:`~contract.errors.ConfigError` naming the field (``sensors[1].interval_s``)
and the reason, never a pydantic traceback.

The live part of the configuration (sampling intervals and batching) can be changed
by a :class:`RemoteConfig` published retained on the device's config topic.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from contract.errors import ConfigError, TopicError
from contract.events import MAX_READINGS_PER_EVENT
from contract.ids import Id
from contract.tls import TlsSettings
from contract.topics import DEFAULT_PREFIX, TopicScheme

__all__ = [
    "AgentConfig",
    "BatchConfig",
    "MqttConfig",
    "OutboxConfig",
    "RemoteConfig",
    "SensorConfig",
    "StatusConfig",
    "TlsConfig",
    "check_live_only",
    "config_error",
    "load_config",
    "parse_remote_config",
]

MIN_INTERVAL_S = 0.01
"""Floor of sampling intervals (100 readings a second per sensor)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


TlsConfig = TlsSettings
"""TLS to the broker: the model every SensorGate client shares (:mod:`contract.tls`)."""


class MqttConfig(_Frozen):
    """The broker and how to reach it."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    client_id: str | None = None
    """Defaults to the device id, so broker ACLs can use ``%c``."""
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsConfig | None = None
    protocol: Literal["3.1.1", "5"] = "5"
    """MQTT version: 5 lets the agent see (and log) a publish the broker's ACL refuses;
    3.1.1 for a broker that does not speak 5."""
    topic_prefix: str = DEFAULT_PREFIX
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    reconnect_min_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    reconnect_jitter: Annotated[float, Field(ge=0, le=1)] = 0.5
    """Each delay is drawn from [d * (1 - jitter), d]: a fleet that lost its broker
    together does not come back in lock-step."""

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        try:
            TopicScheme(prefix=value)
        except TopicError as exc:  # pydantic reports ValueErrors only
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _delays(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self


class SensorConfig(_Frozen):
    """One configured sensor: which driver, how often, with which options."""

    id: Id
    driver: Annotated[str, Field(min_length=1, max_length=64)]
    interval_s: Annotated[float, Field(ge=MIN_INTERVAL_S, le=86400)] = 10.0
    """Seconds between readings; at least 10 ms (a floor, so that a mistyped or remote
    config cannot turn the sampler into a busy loop)."""
    options: dict[str, Any] = Field(default_factory=dict)


class BatchConfig(_Frozen):
    """When readings leave the batcher as one telemetry event: by count or by age."""

    max_readings: Annotated[int, Field(ge=1, le=MAX_READINGS_PER_EVENT)] = 50
    max_age_s: Annotated[float, Field(ge=0.05, le=3600)] = 10.0


class OutboxConfig(_Frozen):
    """The durable outbox: where, how big, how fast it drains, how hard it syncs."""

    path: Path = Path("/var/lib/sensorgate/outbox.db")
    max_events: Annotated[int, Field(ge=1)] = 200_000
    max_bytes: Annotated[int, Field(ge=4096)] = 256 * 1024 * 1024
    max_rate: Annotated[float, Field(ge=0)] = 50.0
    """Events per second sent to the broker (0: unlimited); bounds the drain after an outage."""
    max_inflight: Annotated[int, Field(ge=1, le=65535)] = 50
    durability: Literal["full", "normal"] = "full"
    """``full``: fsync each stored event; ``normal``: at WAL checkpoints (docs/edge.md)."""
    sequence_block: Annotated[int | None, Field(ge=1, le=1_000_000)] = None
    """Deprecated and ignored (accepted so that old files still load; a warning is logged).

    Sequences used to be reserved in blocks, which left a gap after every crash; they
    are now numbered in the transaction that stores the event.
    """


class StatusConfig(_Frozen):
    """The retained status: heartbeat period."""

    heartbeat_s: Annotated[float, Field(ge=1, le=86400)] = 60.0


ENV_PREFIX = "SENSORGATE_"
ENV_NESTED = "__"


class AgentConfig(_Frozen):
    """Everything the edge agent needs, validated once at start.

    The environment is merged in by :func:`load_config` (see :func:`env_overrides`).
    """

    site: Id
    device: Id
    mqtt: MqttConfig = MqttConfig()
    sensors: Annotated[tuple[SensorConfig, ...], Field(min_length=1)]
    batch: BatchConfig = BatchConfig()
    outbox: OutboxConfig = OutboxConfig()
    status: StatusConfig = StatusConfig()
    remote_config: bool = True
    """Follow the retained config topic (live intervals and batching)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("sensors")
    @classmethod
    def _unique(cls, sensors: tuple[SensorConfig, ...]) -> tuple[SensorConfig, ...]:
        seen: set[str] = set()
        for sensor in sensors:
            if sensor.id in seen:
                raise ValueError(f"sensor id {sensor.id!r} is used twice")
            seen.add(sensor.id)
        return sensors

    @property
    def topics(self) -> TopicScheme:
        """The topic scheme of this agent."""
        return TopicScheme(prefix=self.mqtt.topic_prefix)

    @property
    def client_id(self) -> str:
        """The MQTT client id (the device id unless set)."""
        return self.mqtt.client_id or self.device

    def sensor(self, sensor_id: str) -> SensorConfig:
        """Return the sensor called ``sensor_id``."""
        for sensor in self.sensors:
            if sensor.id == sensor_id:
                return sensor
        raise KeyError(sensor_id)

    def with_remote(self, remote: RemoteConfig) -> AgentConfig:
        """Return this config with the live settings of ``remote`` applied."""
        sensors = tuple(
            s.model_copy(update={"interval_s": remote.intervals[s.id]})
            if s.id in remote.intervals
            else s
            for s in self.sensors
        )
        update: dict[str, Any] = {"sensors": sensors}
        if remote.batch is not None:
            update["batch"] = remote.batch
        if remote.heartbeat_s is not None:
            update["status"] = StatusConfig(heartbeat_s=remote.heartbeat_s)
        return self.model_copy(update=update)

    def config_hash(self) -> str:
        """Return a short hash of what shapes the data (site, device, sensors, batching)."""
        doc = self.model_dump(mode="json", include={"site", "device", "sensors", "batch", "status"})
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class RemoteConfig(_Frozen):
    """The live settings an operator may publish (retained) on the config topic.

    Example payload: ``{"intervals": {"cpu": 5}, "batch": {"max_readings": 20,
    "max_age_s": 5}}``. Only what is given changes; an empty retained message
    (clearing the topic) restores the file's settings.
    """

    intervals: dict[str, Annotated[float, Field(ge=MIN_INTERVAL_S, le=86400)]] = Field(
        default_factory=dict
    )
    batch: BatchConfig | None = None
    heartbeat_s: Annotated[float | None, Field(ge=1, le=86400)] = None
    revision: Annotated[str | None, Field(max_length=128)] = None
    """Free text the operator may use to tell revisions apart; echoed in the status."""


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def config_error(exc: ValidationError, *, prefix: str = "") -> ConfigError:
    """Turn the first pydantic error into a :class:`ConfigError` naming the field."""
    err = exc.errors(include_url=False)[0]
    field = _loc(tuple(err["loc"]))
    if prefix:
        field = f"{prefix}.{field}" if field else prefix
    got = "" if err["type"] in ("missing", "value_error") else f" (got {_short(err.get('input'))})"
    msg = err["msg"].removeprefix("Value error, ")
    return ConfigError(field or "(config)", f"{msg}{got}")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def load_config(
    path: Path | str | None, *, overrides: Mapping[str, Any] | None = None
) -> AgentConfig:
    """Read the TOML file at ``path`` (if any), apply the environment, and validate.

    Raises :class:`ConfigError` naming the field and the reason.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("--config", f"no such file: {path}") from None
        except OSError as exc:
            raise ConfigError("--config", f"cannot read {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from None
    data.update(overrides or {})
    data = _merge(data, env_overrides(os.environ))
    try:
        return AgentConfig(**data)
    except ValidationError as exc:
        raise config_error(exc) from None


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; tables (dicts) merge key by key."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Return the ``SENSORGATE_`` variables as a nested mapping (they win over the file).

    ``SENSORGATE_MQTT__HOST=h`` becomes ``{"mqtt": {"host": "h"}}`` (names are case
    insensitive, ``__`` separates levels). A value for a table or a list as a whole
    (``SENSORGATE_SENSORS='[...]'``, ``SENSORGATE_MQTT__TLS='{...}'``) is JSON; a
    scalar is given to the model as text, which converts it (``"2.5"`` -> 2.5).
    Variables that name no top-level key are ignored. (This replaces
    pydantic-settings, which cost the agent ~3 MB of RSS for this one job.)
    """
    fields = AgentConfig.model_fields
    out: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split(ENV_NESTED)]
        if not path[0] or path[0] not in fields or not all(path):
            continue
        value: Any = raw
        structured = len(path) == 1 and path[0] not in _SCALAR_FIELDS
        if structured or raw.lstrip()[:1] in ("{", "["):
            try:
                value = json.loads(raw)
            except ValueError as exc:
                field = ".".join(path)
                raise ConfigError(
                    field, f"{name} is not valid JSON (a table or a list is given as JSON): {exc}"
                ) from None
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
    return out


_SCALAR_FIELDS = frozenset({"site", "device", "remote_config", "log_level"})


def parse_remote_config(payload: bytes, base: AgentConfig) -> RemoteConfig | None:
    """Validate a config-topic payload against ``base``; ``None`` means "back to the file".

    Raises :class:`ConfigError` naming the field and the reason.
    """
    if not payload.strip():
        return None
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError("(payload)", f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError("(payload)", f"expected a JSON object; got a JSON {type(doc).__name__}")
    if isinstance(doc.get("batch"), dict):
        # A partial batch table changes only what it names; the rest stays as configured.
        doc = {**doc, "batch": {**base.batch.model_dump(), **doc["batch"]}}
    try:
        remote = RemoteConfig.model_validate(doc)
    except ValidationError as exc:
        raise config_error(exc) from None
    known = {s.id for s in base.sensors}
    for sensor_id in remote.intervals:
        if sensor_id not in known:
            raise ConfigError(
                f"intervals.{sensor_id}",
                f"no sensor {sensor_id!r} on this device; known: {', '.join(sorted(known))}",
            )
    return remote


_LIVE_KEYS = frozenset({"batch", "status", "log_level", "sensors"})


def check_live_only(old: AgentConfig, new: AgentConfig) -> None:
    """Raise :class:`ConfigError` naming the first change that needs a restart."""
    for key in type(old).model_fields:
        if key not in _LIVE_KEYS and getattr(old, key) != getattr(new, key):
            raise ConfigError(key, "changed in the file: this needs a restart of the agent")
    if [s.id for s in old.sensors] != [s.id for s in new.sensors]:
        raise ConfigError("sensors", "sensors added, removed or reordered: this needs a restart")
    for index, (a, b) in enumerate(zip(old.sensors, new.sensors, strict=True)):
        if a.model_copy(update={"interval_s": b.interval_s}) != b:
            raise ConfigError(
                f"sensors[{index}]", "only interval_s changes live: this needs a restart"
            )
