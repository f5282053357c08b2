"""Gateway settings: one frozen object, read once at the entry point and passed down.

Sources, highest first: keyword arguments, ``SENSORGATE_*`` environment variables
(nested with ``__``, e.g. ``SENSORGATE_INFLUX__URL``), then the defaults. Invalid
settings are refused with :class:`~contract.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import ssl
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from contract import (
    DEFAULT_DEADLETTER_KEEP_BYTES,
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_PREFIX,
    TopicScheme,
)
from contract.errors import ConfigError
from contract.tls import TlsSettings
from edge.mqtt import MqttSettings
from gateway.dashboard.settings import DashboardSettings

__all__ = [
    "GatewaySettings",
    "HaDiscoverySettings",
    "InfluxSettings",
    "IngestSettings",
    "MqttIdentity",
    "MqttRole",
    "MqttSourceSettings",
    "RetentionSettings",
    "StreamSettings",
    "load_settings",
    "retention_hours",
    "settings_env",
]


def _default_spill_dir() -> Path:
    # A state directory (XDG), not a cache or /tmp: the spill holds data the broker
    # has already been told is safe, so it must outlive a reboot.
    from gateway.statedir import state_home

    return state_home() / "spill"


class _Frozen(BaseModel):
    # Attribute docstrings become field descriptions: `sensorgate config example` prints them.
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


MqttRole = Literal["gateway", "operator", "dashboard"]
"""Who an MQTT client of the gateway side acts for; each has its own broker user
(docs/security.md)."""


class MqttIdentity(_Frozen):
    """A broker user of one role: name, password and, for mutual TLS, its certificate."""

    username: str | None = None
    password: SecretStr | None = None
    cert_file: Path | None = None
    """Client certificate of this role (PEM), in place of ``mqtt.tls.cert_file``."""
    key_file: Path | None = None
    key_password: SecretStr | None = None

    @model_validator(mode="after")
    def _pair(self) -> MqttIdentity:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS needs both)")
        return self


class MqttSourceSettings(_Frozen):
    """The gateway's MQTT connection and subscription, and the other roles' users."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    """The gateway's broker user (source and sinks)."""
    password: SecretStr | None = None
    tls: TlsSettings | None = None
    """TLS to the broker (CA, server name, the gateway's client certificate) for every
    MQTT client of this side: source, sinks, ``alarms ack``, the dashboard. None: plain
    TCP (a loopback or private-network broker only; docs/security.md)."""
    operator: MqttIdentity = MqttIdentity()
    """The operator's user (``sensorgate alarms ack``): may write commands."""
    dashboard: MqttIdentity = MqttIdentity()
    """The dashboard's user: reads alarms and summaries (writes commands only if the
    broker's ACL lets the dashboard acknowledge)."""
    client_id_prefix: str = "sg-gateway"
    share_group: str | None = "sensorgate"
    """Shared-subscription group: gateway processes in one group split the load. Empty
    (or none): plain subscriptions, for one gateway connection (one partition).
    mosquitto 2.0 does not keep shared subscriptions across its own restart: until the
    gateway subscribes again, what devices publish on a shared filter reaches no one
    and is lost (docs/hardening.md); a plain subscription of a persistent session is
    restored, and the broker queues for it."""
    partitions: int | Literal["auto"] = "auto"
    """MQTT connections (source partitions) across the whole cluster. ``"auto"`` (the
    default; ``None`` means the same): one per worker, ``processes x workers``, resolved
    when the gateway starts, so every worker of every process reads its own share of the
    shared subscription; one without a share group. Each partition is one persistent
    MQTT session (client id ``{client_id_prefix}-{share_group}-{index}``): keep the count
    stable across restarts, or drain the sessions of partitions that go away
    (docs/scaling.md)."""
    batch_max_messages: Annotated[int, Field(ge=1, le=100_000)] = 2_000
    """Most messages handed to the flow as one batch."""
    batch_max_age_ms: Annotated[int, Field(ge=0, le=10_000)] = 50
    """A batch of messages is handed to the flow when ``batch_max_messages`` are waiting
    or the oldest has waited this long (0: at once); few, larger batches amortise the
    per-batch work of the columnar steps and make few, larger writes."""
    receive_maximum: Annotated[int, Field(ge=1, le=65535)] = 20_000
    """Most unacknowledged messages the broker may send one partition (MQTT 5)."""
    inbox_max_bytes: Annotated[int, Field(ge=65_536)] = 16 * 1024 * 1024
    """Payload bytes a partition holds before handing them to the flow; beyond, it stops
    reading its socket (TCP backpressure), which bounds memory whatever the broker does."""
    session_expiry_s: Annotated[int, Field(ge=0)] = 7 * 86_400
    """How long the broker keeps the gateway's session (and queues) while it is away."""
    max_packet_bytes: Annotated[int, Field(ge=1024, le=268_435_455)] = 1_048_576 + 65_536
    """MQTT 5 Maximum Packet Size the gateway announces on connect: the broker never
    sends it a larger packet, so one huge message cannot make it buffer without bound.
    Must exceed ``ingest.max_payload_bytes`` (headroom for the topic and properties); set
    the broker's ``max_packet_size`` no higher, so oversize publishes are refused at
    the broker, where the publisher is told (docs/security.md, "Limits")."""

    @field_validator("partitions", mode="before")
    @classmethod
    def _auto_partitions(cls, value: object) -> object:
        if value is None or value == "auto":
            return "auto"
        try:
            count = int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            count = 0
        if isinstance(value, bool) or not 1 <= count <= 256 or str(count) != str(value):
            raise ValueError('expected "auto" or a whole number from 1 to 256')
        return count

    def partition_count(self, processes: int = 1, workers: int = 1) -> int:
        """Return the number of partitions for a cluster of ``processes`` x ``workers``."""
        if self.partitions == "auto":
            # Without a share group every partition would receive every message.
            return 1 if self.share_group is None else max(1, processes) * max(1, workers)
        return self.partitions

    def for_cluster(self, processes: int = 1, workers: int = 1) -> MqttSourceSettings:
        """Return these settings with ``partitions`` resolved for the cluster's size."""
        return self.model_copy(update={"partitions": self.partition_count(processes, workers)})

    @field_validator("share_group", mode="before")
    @classmethod
    def _no_group(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _one_unshared_connection(self) -> Self:
        if self.share_group is None and self.partitions != "auto" and self.partitions > 1:
            raise ValueError(
                f"without a share group every one of the {self.partitions} partitions would"
                " receive every message; set mqtt.share_group or mqtt.partitions = 1"
            )
        return self

    @property
    def batch_max_age(self) -> timedelta:
        """``batch_max_age_ms`` as a timedelta."""
        return timedelta(milliseconds=self.batch_max_age_ms)

    def link_settings(self, client_id: str, *, role: MqttRole = "gateway") -> MqttSettings:
        """Return settings for one MQTT client (MQTT 5, TLS as configured) of ``role``.

        The gateway's clients use ``username``/``password`` and ``tls`` as set; the
        operator's and the dashboard's use their own user and, if given, their own
        client certificate (never the gateway's).
        """
        username, password, tls = self.username, self.password, self.tls
        if role != "gateway":
            who = self.operator if role == "operator" else self.dashboard
            username, password = who.username, who.password
            if tls is not None:
                tls = tls.model_copy(
                    update={
                        "cert_file": who.cert_file,
                        "key_file": who.key_file,
                        "key_password": who.key_password,
                    }
                )
        return MqttSettings(
            host=self.host,
            port=self.port,
            username=username,
            password=password,
            tls=tls,
            client_id=client_id,
            clean_session=False,
            protocol="5",
            # Sink sessions hold nothing, but an abandoned one must not live for ever.
            session_expiry_s=self.session_expiry_s,
        )

    @property
    def url(self) -> str:
        """The broker as a URL."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @model_validator(mode="after")
    def _role_certificates_need_tls(self) -> MqttSourceSettings:
        for role, who in (("operator", self.operator), ("dashboard", self.dashboard)):
            if who.cert_file is not None and self.tls is None:
                raise ValueError(
                    f"mqtt.{role}.cert_file needs mqtt.tls (the CA and server name every"
                    " client of this side uses); without it the certificate would be ignored"
                )
        return self


_DURATION = re.compile(r"^(\d{1,6})([hdw])$")
_HOURS = {"h": 1, "d": 24, "w": 168}


def retention_hours(text: str) -> int | None:
    """Hours of an InfluxQL retention duration (``30d``, ``12h``, ``52w``); None for ``INF``.

    Raises ValueError naming what is accepted: whole hours, days or weeks (influxd keeps
    data at least an hour), or ``INF`` (for ever).
    """
    if text == "INF":
        return None
    m = _DURATION.match(text)
    if m is None or int(m.group(1)) == 0:
        raise ValueError(
            f"expected a duration of whole hours, days or weeks (12h, 30d, 52w) or INF;"
            f" got {text!r}"
        )
    return int(m.group(1)) * _HOURS[m.group(2)]


class RetentionSettings(_Frozen):
    """How long each class of measurement is kept: one InfluxDB 1.x retention policy each.

    ``raw`` holds ``readings`` and ``late_readings``; ``aggregates`` holds
    ``aggregates`` and ``alarms``; ``deadletters`` holds ``deadletters``. At start the
    gateway (and ``sensorgate influx setup``) creates the policies, or alters one whose
    duration differs, and makes the raw one the database's default (docs/gateway.md).
    """

    enabled: bool | None = None
    """None (automatic): on for InfluxDB 1.x (``api = "v1"`` without a token), off
    otherwise. True with a token on the v1 API: InfluxDB 2.x with one bucket per policy,
    named ``<database>/<policy>`` (docs/influxdb.md); the v2 and v3 APIs have no
    retention policies, so True is refused there. False: everything in the database's
    default policy, as before retention existed."""
    raw: str = "30d"
    """How long raw readings (and late readings) are kept: ``12h``, ``30d``, ``52w`` or
    ``INF``. At least ``ingest.max_past_s``, or InfluxDB would refuse old readings."""
    aggregates: str = "400d"
    """How long window aggregates and alarm events are kept."""
    deadletters: str = "14d"
    """How long dead letters are kept."""
    raw_policy: str = "raw"
    """Name of the raw policy (made the database's DEFAULT, so unqualified reads of
    ``readings`` keep working)."""
    aggregates_policy: str = "aggregates"
    """Name of the policy of ``aggregates`` and ``alarms``."""
    deadletters_policy: str = "deadletters"
    """Name of the policy of ``deadletters``."""

    @field_validator("raw", "aggregates", "deadletters")
    @classmethod
    def _valid_duration(cls, value: str) -> str:
        retention_hours(value)
        return value

    @field_validator("raw_policy", "aggregates_policy", "deadletters_policy")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not 1 <= len(value) <= 64 or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError(f"expected 1 to 64 printable characters; got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_duration_per_name(self) -> RetentionSettings:
        seen: dict[str, str] = {}
        for kind in ("raw", "aggregates", "deadletters"):
            name, duration = getattr(self, f"{kind}_policy"), getattr(self, kind)
            if seen.setdefault(name, duration) != duration:
                raise ValueError(
                    f"policy {name!r} is given two durations ({seen[name]} and {duration});"
                    " give the classes distinct policy names or the same duration"
                )
        return self


class InfluxSettings(_Frozen):
    """Where readings, aggregates, alarms and dead letters are written."""

    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2", "v3"] = "v1"
    """Write API. ``v1``: ``/write?db=`` (InfluxDB 1.x, and the v1 compatibility API of
    2.x and 3.x with ``token``); ``v2``: ``/api/v2/write`` via influxdb-client (``org``,
    ``bucket``, ``token``; InfluxDB 2.x, Cloud, 3.x); ``v3``: ``/api/v3/write_lp?db=``
    (InfluxDB 3 Core and Enterprise; ``database``, ``token``). Reads are InfluxQL on
    ``/query`` whatever the API (docs/influxdb.md)."""
    database: str = "sensorgate"
    """v1 and v3 database, and the InfluxQL database of queries (on 2.x the database
    name of the DBRP mapping to ``bucket``: ``sensorgate influx setup`` creates it)."""
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    """API token of InfluxDB 2.x/3.x (sent as ``Authorization: Token``, ``Bearer`` on v3)."""
    org: str | None = None
    """InfluxDB 2.x organization (name) of ``bucket``."""
    bucket: str | None = None
    """InfluxDB 2.x bucket that the v2 API writes to."""
    tls: TlsSettings | None = None
    """TLS of an ``https://`` url: the CA that signed the server (none: the system's trust
    store), a client certificate, a server name. Ignored for ``http://``."""
    dbrp_retention_policy: str = "autogen"
    """InfluxDB 2.x: retention policy name of the DBRP mapping (``database`` plus this
    name to ``bucket``) that lets InfluxQL read the bucket; made the default mapping."""
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5_000
    """Lines per write request (the pipelined writer coalesces bodies up to about this)."""
    timeout_s: Annotated[float, Field(gt=0)] = 10.0
    gzip: bool | None = None
    """Compress write bodies. None: automatic, off for a loopback host (``localhost``,
    127.0.0.0/8, ``::1``: compressing costs more CPU than it saves), on otherwise; True
    or False force it. Read :attr:`use_gzip` for the decision."""
    max_in_flight: Annotated[int, Field(ge=1, le=64)] = 2
    """Most write requests one pipelined writer (the points sink's) has in flight at
    once: influxd 1.x answers 500 "engine: error syncing wal" under many concurrent
    writes. The synchronous writers (alarms, dead letters) keep one."""
    aggregate_fields: tuple[
        Literal["count", "mean", "min", "max", "stddev", "first", "last"], ...
    ] = ("count", "mean", "min", "max")
    """Fields stored on each ``aggregates`` point. influxd's write cost grows with the
    fields, so the default is lean; add ``stddev``, ``first``, ``last`` when wanted
    (aggregate rules see every field whatever is stored)."""
    reading_seq: bool = False
    """Also store each raw reading's event sequence (``seq`` field). Off by default:
    one field per point is what keeps influxd's write cost low."""
    max_pending_lines: Annotated[int, Field(ge=1)] = 200_000
    """Lines a pipelined writer holds that are not yet sent; beyond, ``submit`` blocks."""
    retry_max_s: Annotated[float, Field(gt=0)] = 30.0
    """Give up a write after retrying for this long (then the caller decides)."""
    spill_enabled: bool = True
    """Spill writes that keep failing to a local on-disk buffer and drain it later."""
    spill_dir: Path = Field(default_factory=_default_spill_dir)
    """Where the spill buffers live (one SQLite file per writer); must survive restarts."""
    spill_max_bytes: Annotated[int, Field(ge=1)] = 1 << 30
    """Budget of the spill of one writer (compressed bytes); when full, writes block."""
    spill_after_s: Annotated[float, Field(ge=0)] = 5.0
    """Retry a failing write this long before spilling it (the gateway keeps flowing)."""
    drain_rate: Annotated[float, Field(gt=0)] = 100_000.0
    """Most points per second sent while draining the spill, to spare a recovering server."""
    drain_backoff_max_s: Annotated[float, Field(gt=0)] = 10.0
    """Longest pause between attempts while InfluxDB is still failing during a drain."""
    retention: RetentionSettings = RetentionSettings()
    """Retention policies per class of measurement (InfluxDB 1.x)."""

    @property
    def retention_active(self) -> bool:
        """Whether writes and reads use the retention policies of :attr:`retention`."""
        if self.retention.enabled is not None:
            return self.retention.enabled
        return self.api == "v1" and self.token is None

    @model_validator(mode="after")
    def _retention_needs_the_v1_api(self) -> InfluxSettings:
        if self.retention.enabled and self.api != "v1":
            raise ValueError(
                f"retention.enabled: retention policies need the v1 write API (/write?rp=);"
                f" the {self.api} API writes to one {'bucket' if self.api == 'v2' else 'database'}"
                " whatever the policy. Set retention.enabled = false and give that"
                f" {'bucket' if self.api == 'v2' else 'database'} a retention period, or use"
                " api = 'v1' with a token and one bucket per policy (docs/influxdb.md)"
            )
        return self

    def verify(self) -> ssl.SSLContext | bool:
        """Return what HTTP clients verify the server with: a context from ``tls``, or True."""
        return self.tls.ssl_context() if self.tls is not None else True

    @property
    def use_gzip(self) -> bool:
        """Whether write bodies are gzipped: ``gzip`` if set, else True unless loopback."""
        if self.gzip is not None:
            return self.gzip
        return not _is_loopback(self.url)


def _is_loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name other than localhost: assume it is remote
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


class IngestSettings(_Frozen):
    """Validation limits for incoming telemetry."""

    max_payload_bytes: Annotated[int, Field(ge=256)] = DEFAULT_MAX_PAYLOAD_BYTES
    max_future_s: Annotated[float, Field(ge=0)] = 300.0
    """Readings more than this far ahead of the gateway's clock are rejected."""
    max_past_s: Annotated[float, Field(ge=0)] = 30 * 86_400.0
    """Readings older than this are rejected."""
    deadletter_keep_bytes: Annotated[int, Field(ge=0)] = DEFAULT_DEADLETTER_KEEP_BYTES
    """Payload bytes a dead letter keeps; beyond, only its size and sha256 (so a flood
    of huge bad messages cannot fill the dead-letter store)."""


class StreamSettings(_Frozen):
    """Event-time windows, lateness and dedupe."""

    windows: tuple[str, ...] = ("1m",)
    """Tumbling windows (``"1m"``) and sliding ones (``"5m/1m"``: length/step). One
    minute by default: at the cadence of most sensors (one reading a second or slower) a
    finer window stores nearly as many points as the raw readings it summarises, and
    influxd's cost grows with points; add ``"10s"`` where it pays for itself."""
    allowed_lateness_s: Annotated[float, Field(ge=0)] = 10.0
    """How far behind the newest event time a reading may arrive and still count."""
    dedupe_intervals: Annotated[int, Field(ge=1)] = 256
    """Memory bound of the per-device dedupe (intervals of sequence numbers)."""
    quiet_s: Annotated[float | None, Field(ge=0)] = None
    """Silence after which a device's windows follow the fleet's clock, and the fleet's
    clock follows the wall clock (default: the allowed lateness)."""
    shards: Annotated[int, Field(ge=1, le=4096)] = 8
    """Buckets the devices are hashed into, each one keyed state of the flow (spread over
    workers and processes). Fixed for the life of a recovery directory."""
    max_devices: Annotated[int | None, Field(ge=1)] = 100_000
    """Most devices the gateway keeps state for (None: no cap). Messages of further new
    devices become dead letters ``cardinality``. Each shard takes an equal share, so the
    cap is reached slightly early when the devices hash unevenly."""
    max_series: Annotated[int | None, Field(ge=1)] = 500_000
    """Most series (device, sensor, metric) the gateway keeps state for (None: no cap);
    about 2-4 KB of memory each with the default rules."""
    evict_idle_s: Annotated[float | None, Field(gt=0)] = 32 * 86_400.0
    """Forget a device (dedupe, event clock, windows, detectors) once it has been silent
    this long with no active alarm and no open window (None: never), so that a fleet
    whose device ids come and go does not grow the gateway's memory. At least
    ``ingest.max_past_s``: a redelivered old message of a forgotten device is then
    refused as out of range, never stored twice."""
    max_series_per_device: Annotated[int | None, Field(ge=1)] = 1_000
    """Most series one device may have (None: no cap): a device that invents sensor or
    metric names cannot grow the gateway's memory."""

    @field_validator("windows")
    @classmethod
    def _valid_windows(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from dataflows.config import StreamConfig

        StreamConfig.from_strings(value, 0)  # raises ValueError with the reason
        return value


class HaDiscoverySettings(_Frozen):
    """Home Assistant MQTT discovery of the gateway's own alarms and aggregates (opt-in)."""

    enabled: bool = False
    """Publish discovery configs (retained, QoS 1) when a device's first reading arrives, and
    again once after a restart: per device an alarm binary sensor and an active alarm count
    (their state is the retained ``.../alarms/active`` summary)."""
    discovery_prefix: str = "homeassistant"
    """Home Assistant's discovery prefix (its MQTT integration's setting)."""
    aggregates: bool = True
    """Also publish each series' latest window aggregate, retained, on
    ``{prefix}/{site}/{device}/aggregates/{sensor}/{metric}`` whenever its window closes,
    with a sensor config per series: one message per series and window, so consider the
    fleet's size."""
    window: str | None = None
    """The window whose aggregates are published (one of ``stream.windows``; default the
    first)."""

    @field_validator("discovery_prefix")
    @classmethod
    def _topic_levels(cls, value: str) -> str:
        levels = value.split("/")
        if any(not level or level in ("+", "#") or "$" in level for level in levels):
            raise ValueError("must be MQTT topic levels without wildcards, '$' or empty levels")
        return value


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


def settings_env(settings: GatewaySettings) -> dict[str, str]:
    """Return ``SENSORGATE_*`` variables that reproduce ``settings`` in a child process."""
    env: dict[str, str] = {}

    def flatten(prefix: str, value: Any) -> None:
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
    it cannot be a secret.
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
