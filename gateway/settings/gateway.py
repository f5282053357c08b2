"""The one settings object of the gateway, :class:`GatewaySettings`.

Its sections are the other modules' models; the checks that span sections are here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import (
    Field,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from contract import (
    DEFAULT_PREFIX,
    TopicScheme,
)
from contract.errors import ConfigError
from gateway.dashboard.settings import DashboardSettings
from gateway.settings.flow import HaDiscoverySettings, IngestSettings, StreamSettings
from gateway.settings.influx import InfluxSettings, retention_hours
from gateway.settings.mqtt import MqttSourceSettings

__all__ = ["GatewaySettings"]


class GatewaySettings(BaseSettings):
    """Everything the gateway needs to run."""

    model_config = SettingsConfigDict(
        env_prefix="SENSORGATE_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then ``SENSORGATE_*`` variables, then the config file."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return (*sources, file_secret_settings)

    topic_prefix: str = DEFAULT_PREFIX
    gateway_id: str = "gateway"
    mqtt: MqttSourceSettings = MqttSourceSettings()
    influx: InfluxSettings = InfluxSettings()
    ingest: IngestSettings = IngestSettings()
    stream: StreamSettings = StreamSettings()
    dashboard: DashboardSettings = DashboardSettings()
    epoch_interval_s: Annotated[float, Field(gt=0, le=600)] = 3.0
    """Bytewax epoch: messages are acknowledged to the broker once per epoch, and with
    recovery every shard's whole state is snapshotted once per epoch. 3 s, not 1 s: at
    50,000 series with the default rules the snapshots (about 24 MB a round) took the
    worker a large share of each second on a loaded 2-core box; one benchmark pair at
    load 7.5 (docs/benchmarks.md, s18) gave 59,823 vs 34,474 readings/s, 8.2 vs 10.8 CPU s
    per 1 M and p99 arrival-to-stored 1.9 vs 4.2 s. The price: acknowledgements up to
    3 s later, and up to 3 s of messages redelivered after a crash (deduped)."""
    recovery: bool = True
    """Keep the flow's state (windows, dedupe, alarms, event clocks) in Bytewax recovery
    snapshots, once per epoch, so that a crash or restart loses none of it. Costs about
    5 % of a core and a few MB/s of disk writes at 50,000 series (docs/gateway.md)."""
    recovery_dir: Path | None = None
    """Where recovery snapshots live (made 0700); none:
    ``$XDG_STATE_HOME/sensorgate/recovery/<gateway_id>``. Tied to ``stream.shards``:
    the gateway refuses to start on a folder made with another shard count."""
    recovery_partitions: Annotated[int, Field(ge=1)] = 1
    rules_file: Path | None = None
    """Alarm rules (TOML, docs/alarms.md); none: the default rules. Reloaded, alarm
    state kept, on SIGHUP or when its mtime changes."""
    adapters_file: Path | None = None
    """Adapters for foreign dialects (Zigbee2MQTT, Tasmota, Shelly, Home Assistant,
    Sparkplug B, Telegraf): a TOML file, docs/adapters.md; none: SensorGate's own only."""
    ha_discovery: HaDiscoverySettings = HaDiscoverySettings()
    """Home Assistant discovery of the gateway's alarms and aggregates (docs/adapters.md)."""
    rules_check_s: Annotated[float, Field(gt=0)] = 5.0
    """How often the rules file's mtime is looked at."""
    metrics_host: str = "127.0.0.1"
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9464
    """Prometheus ``/metrics`` and ``/healthz``; 0 turns the endpoint off. In a cluster,
    process N listens on ``metrics_port + N``."""

    @model_validator(mode="after")
    def _known_ha_window(self) -> GatewaySettings:
        # A ConfigError (not a ValueError) passes through pydantic with its field named.
        window = self.ha_discovery.window
        if window is not None and window not in self.stream.windows:
            raise ConfigError(
                "ha_discovery.window",
                f"must be one of stream.windows {list(self.stream.windows)}; got {window!r}",
            )
        return self

    @property
    def topics(self) -> TopicScheme:
        """The topic scheme under the configured prefix."""
        return TopicScheme(self.topic_prefix)

    @property
    def recovery_path(self) -> Path | None:
        """The recovery folder in use (None: recovery is off)."""
        if not self.recovery:
            return None
        if self.recovery_dir is not None:
            return self.recovery_dir
        from gateway.statedir import state_home

        return state_home() / "recovery" / self.gateway_id

    @model_validator(mode="after")
    def _eviction_after_the_past_limit(self) -> GatewaySettings:
        evict = self.stream.evict_idle_s
        if evict is not None and evict < self.ingest.max_past_s:
            raise ValueError(
                f"stream.evict_idle_s ({evict:g}) must be at least ingest.max_past_s"
                f" ({self.ingest.max_past_s:g}): a forgotten device's old messages could"
                " otherwise be stored twice; lower both, or turn eviction off (null)"
            )
        return self

    @model_validator(mode="after")
    def _raw_readings_outlive_the_ingest_window(self) -> GatewaySettings:
        if not self.influx.retention_active:
            return self
        hours = retention_hours(self.influx.retention.raw)
        if hours is not None and hours * 3600 < self.ingest.max_past_s:
            raise ValueError(
                f"influx.retention.raw ({self.influx.retention.raw}) is shorter than"
                f" ingest.max_past_s ({self.ingest.max_past_s:g} s): InfluxDB would refuse"
                " the older readings the gateway accepts; lower ingest.max_past_s or keep"
                " raw readings longer"
            )
        return self

    @model_validator(mode="after")
    def _packet_fits_a_payload(self) -> GatewaySettings:
        if self.mqtt.max_packet_bytes <= self.ingest.max_payload_bytes:
            raise ValueError(
                f"mqtt.max_packet_bytes ({self.mqtt.max_packet_bytes}) must exceed"
                f" ingest.max_payload_bytes ({self.ingest.max_payload_bytes}) by the topic"
                " and properties of a message, or valid messages could never arrive"
            )
        return self

    @property
    def ha_window(self) -> str:
        """The window whose aggregates Home Assistant discovery publishes."""
        return self.ha_discovery.window or self.stream.windows[0]
