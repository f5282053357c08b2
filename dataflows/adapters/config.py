"""The adapters file (``SENSORGATE_ADAPTERS_FILE``): one ``[[adapter]]`` table per source.

Frozen pydantic models, validated once at start; a bad file raises
:class:`~contract.errors.ConfigError` naming the field as ``adapter[2].topic`` and
saying what was expected. Unknown keys are refused (a typo must not silently fall back
to a default). Example (more in ``deploy/adapters/``)::

    [[adapter]]
    name = "z2m"
    kind = "zigbee2mqtt"
    topic = "zigbee2mqtt"          # Zigbee2MQTT's base_topic
    site = "home"                  # the default site of this adapter's devices

    [adapter.devices]              # foreign id = "device" or "site/device"
    "0x00158d0001a2b3c4" = "kitchen-th"
"""

from __future__ import annotations

import tomllib
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from contract.errors import ConfigError, TopicError
from contract.ids import check_id
from dataflows.adapters.topicfilter import check_filter

__all__ = [
    "AdapterConfig",
    "AdaptersConfig",
    "BaseAdapterConfig",
    "HomeAssistantConfig",
    "ShellyConfig",
    "SparkplugConfig",
    "TasmotaConfig",
    "TelegrafConfig",
    "Zigbee2MqttConfig",
    "load_adapters",
    "parse_adapters",
]

_DEFAULT_ENUMS: dict[str, dict[str, float]] = {"*": {"ON": 1, "OFF": 0, "on": 1, "off": 0}}


def _topic_root(value: str) -> str:
    if not value or value.startswith("/") or value.endswith("/") or "//" in value:
        raise ValueError(
            f"expected a topic without leading, trailing or doubled '/'; got {value!r}"
        )
    if any(c in value for c in "+#\x00"):
        raise ValueError(f"expected a topic without wildcards; got {value!r}")
    return value


class BaseAdapterConfig(BaseModel):
    """Options every adapter has."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """Unique among the adapters; names the adapter in dead letters and routing keys."""
    kind: str
    topic: str
    """The family's root topic (base topic, discovery prefix, namespace...)."""
    site: str = "default"
    """Site of the devices this adapter maps, unless ``devices`` says otherwise."""
    devices: dict[str, str] = Field(default_factory=dict)
    """Foreign device id -> ``"device"`` or ``"site/device"``."""
    ids: Literal["sanitise", "refuse"] = "sanitise"
    booleans: Literal["number", "skip"] = "number"
    """JSON booleans as readings 1/0, or skipped (counted)."""
    enums: dict[str, dict[str, float]] = Field(default_factory=lambda: dict(_DEFAULT_ENUMS))
    """Field -> {text -> number}; the field ``"*"`` applies to every field."""
    numeric_strings: bool = True
    decimal_comma: bool = True
    metrics: dict[str, str] = Field(default_factory=dict)
    """Foreign field name -> metric id (before the built-in normalisation)."""
    units: dict[str, str] = Field(default_factory=dict)
    """Metric -> unit, replacing the family's unit."""
    exclude: tuple[str, ...] = ()
    """Foreign field names that are never readings (counted as skipped)."""
    payload_time: bool = True
    """Use the payload's own time when it has one (else the arrival time)."""
    timezone: str = "UTC"
    """IANA zone of naive payload times (Tasmota's ``Time`` is local time)."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return check_id("adapter name", value)
        except TopicError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        return _topic_root(value)

    @field_validator("site")
    @classmethod
    def _site(cls, value: str) -> str:
        try:
            return check_id("site", value)
        except TopicError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: dict[str, str]) -> dict[str, str]:
        for foreign, target in value.items():
            parts = target.split("/")
            if len(parts) > 2:
                raise ValueError(
                    f"device {foreign!r} maps to {target!r}; expected 'device' or 'site/device'"
                )
            try:
                for kind, part in zip(("site", "device")[2 - len(parts) :], parts, strict=True):
                    check_id(kind, part)
            except TopicError as exc:
                raise ValueError(f"device {foreign!r}: {exc}") from None
        return value

    @field_validator("metrics", "units")
    @classmethod
    def _metric_ids(cls, value: dict[str, str]) -> dict[str, str]:
        for key, target in value.items():
            if not target or len(target) > 128:
                raise ValueError(f"{key!r} maps to {target!r}; expected 1-128 characters")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


class Zigbee2MqttConfig(BaseAdapterConfig):
    """Zigbee2MQTT: ``<topic>/<friendly_name>`` state JSON and availability."""

    kind: Literal["zigbee2mqtt"]
    topic: str = "zigbee2mqtt"
    sensor: str = "zigbee"
    nested_names: bool = False
    """Friendly names contain '/': subscribe ``<topic>/#`` (then nothing is shared)."""
    bridge_device: str = "bridge"
    exclude: tuple[str, ...] = ("update", "update_available", "last_seen", "elapsed", "device")


class TasmotaConfig(BaseAdapterConfig):
    """Tasmota: ``tele/<topic>/SENSOR|STATE|LWT`` under a configurable FullTopic."""

    kind: Literal["tasmota"]
    topic: str = "%prefix%/%topic%/"
    """Tasmota's FullTopic; %prefix% and %topic% (or %hostname%, %id%) each one level."""
    tele_prefix: str = "tele"
    ds18b20_by_id: bool = False
    """Name DS18B20-n sensors by their ``Id`` (stable when probes are added)."""
    online_payload: str = "Online"
    offline_payload: str = "Offline"
    state_metrics: bool = True
    """Read ``tele/.../STATE`` (uptime, Wi-Fi RSSI and signal, load) as readings."""

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        levels = value.strip("/").split("/")
        if "%prefix%" not in levels:
            raise ValueError(f"FullTopic {value!r} must hold %prefix% as a whole level")
        if not {"%topic%", "%hostname%", "%id%"} & set(levels):
            raise ValueError(f"FullTopic {value!r} must hold %topic%, %hostname% or %id%")
        if any(c in value for c in "+#"):
            raise ValueError(f"FullTopic {value!r} must not hold wildcards")
        return value


class ShellyConfig(BaseAdapterConfig):
    """Shelly Gen1 (``shellies/<id>/...``) and Gen2/Gen3 (``<prefix>/events/rpc``...)."""

    kind: Literal["shelly"]
    topic: str = "shellies"
    gen1: bool = True
    gen2_prefixes: tuple[str, ...] = ("+",)
    """Topic filters matching Gen2/Gen3 device prefixes ('+' = any one level)."""
    device_from: Literal["topic", "src"] = "topic"
    gen1_temperature_unit: Literal["C", "F"] = "C"
    exclude: tuple[str, ...] = (
        "tF",
        "temperature_f",
        "id",
        "minute_ts",
        "by_minute",
        "unixtime",
        "ts",
        "cfg_rev",
        "kvs_rev",
        "schedule_rev",
        "webhook_rev",
        "last_sync_ts",
    )

    @field_validator("gen2_prefixes")
    @classmethod
    def _prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for prefix in value:
            check_filter(prefix)
            if "#" in prefix:
                raise ValueError(f"Gen2 prefix filter {prefix!r} must not hold '#'")
        return value


class HomeAssistantConfig(BaseAdapterConfig):
    """Home Assistant MQTT discovery: learn entities, then read their state topics."""

    kind: Literal["homeassistant"]
    topic: str = "homeassistant"
    state_filters: tuple[str, ...] = ()
    """Filters covering the state (and availability) topics the configs name."""
    components: tuple[str, ...] = ("sensor", "binary_sensor")
    device_from: Literal["identifiers", "name", "node_id"] = "identifiers"

    @field_validator("state_filters")
    @classmethod
    def _filters(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            check_filter(item)
        return value


class SparkplugConfig(BaseAdapterConfig):
    """Eclipse Sparkplug B: ``spBv1.0/<group>/<type>/<node>[/<device>]`` protobuf."""

    kind: Literal["sparkplug"]
    topic: str = "spBv1.0"
    groups: tuple[str, ...] = ()
    """Group ids to read (empty: every group)."""
    site_from_group: bool = True
    device_separator: str = "."
    """Device id of a Sparkplug device: ``<edge_node><sep><device>``."""
    sensor: str = "sparkplug"
    rebirth: bool = True
    """Ask an edge node to rebirth (NCMD Node Control/Rebirth) on unknown aliases or seq gaps."""
    rebirth_min_interval_s: float = Field(default=10.0, ge=0)
    skip_prefixes: tuple[str, ...] = ("Node Control/", "Device Control/", "Properties/", "bdSeq")

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for group in value:
            if not group or any(c in group for c in "/+#"):
                raise ValueError(f"group id {group!r} must be one topic level without wildcards")
        return value


class TelegrafConfig(BaseAdapterConfig):
    """Telegraf ``outputs.mqtt``: influx line protocol or Telegraf's JSON serializer."""

    kind: Literal["telegraf"]
    topic: str = "telegraf"
    format: Literal["auto", "influx", "json"] = "auto"
    precision: Literal["auto", "s", "ms", "us", "ns"] = "auto"
    site_tag: str | None = None
    device_tag: str = "host"
    sensor_tags: tuple[str, ...] | None = None
    """Tags whose values extend the sensor (``cpu.cpu0``); None: every other tag."""
    ignore_tags: tuple[str, ...] = ()


AdapterConfig = Annotated[
    Zigbee2MqttConfig
    | TasmotaConfig
    | ShellyConfig
    | HomeAssistantConfig
    | SparkplugConfig
    | TelegrafConfig,
    Field(discriminator="kind"),
]


class AdaptersConfig(BaseModel):
    """The whole adapters file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    adapter: tuple[AdapterConfig, ...] = ()


_ADAPTER = TypeAdapter(AdaptersConfig)
KINDS = ("zigbee2mqtt", "tasmota", "shelly", "homeassistant", "sparkplug", "telegraf")


def _field(loc: tuple[int | str, ...]) -> str:
    out = ""
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if isinstance(part, int):
            out += f"[{part}]"
            # A discriminated union puts the tag ("zigbee2mqtt") after the index.
            if parts and parts[0] in KINDS:
                parts.pop(0)
        else:
            out += f".{part}" if out else str(part)
    return out or "adapters"


def parse_adapters(doc: dict[str, Any]) -> AdaptersConfig:
    """Validate a parsed adapters document; raise :class:`ConfigError` if it is wrong."""
    for i, item in enumerate(doc.get("adapter", []) if isinstance(doc, dict) else []):
        if isinstance(item, dict) and item.get("kind") not in KINDS:
            raise ConfigError(
                f"adapter[{i}].kind",
                f"expected one of {', '.join(KINDS)}; got {item.get('kind')!r}",
            )
    try:
        config = _ADAPTER.validate_python(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(
            _field(tuple(err["loc"])), err["msg"].removeprefix("Value error, ")
        ) from None
    names: set[str] = set()
    for i, adapter in enumerate(config.adapter):
        if adapter.name in names:
            raise ConfigError(f"adapter[{i}].name", f"name {adapter.name!r} is used twice")
        names.add(adapter.name)
    return config


def load_adapters(path: Path | str) -> AdaptersConfig:
    """Read and validate an adapters TOML file."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("SENSORGATE_ADAPTERS_FILE", f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("SENSORGATE_ADAPTERS_FILE", f"{path} is not TOML: {exc}") from None
    return parse_adapters(doc)
