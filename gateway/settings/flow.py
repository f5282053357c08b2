"""What the dataflow is told: ingest limits, stream steps, Home Assistant discovery."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    Field,
    field_validator,
)

from contract import (
    DEFAULT_DEADLETTER_KEEP_BYTES,
    DEFAULT_MAX_PAYLOAD_BYTES,
)
from gateway.settings.base import Frozen

__all__ = ["HaDiscoverySettings", "IngestSettings", "StreamSettings"]


class IngestSettings(Frozen):
    """Validation limits for incoming telemetry."""

    max_payload_bytes: Annotated[int, Field(ge=256)] = DEFAULT_MAX_PAYLOAD_BYTES
    max_future_s: Annotated[float, Field(ge=0)] = 300.0
    """Readings more than this far ahead of the gateway's clock are rejected."""
    max_past_s: Annotated[float, Field(ge=0)] = 30 * 86_400.0
    """Readings older than this are rejected."""
    deadletter_keep_bytes: Annotated[int, Field(ge=0)] = DEFAULT_DEADLETTER_KEEP_BYTES
    """Payload bytes a dead letter keeps; beyond, only its size and sha256 (so a flood
    of huge bad messages cannot fill the dead-letter store)."""


class StreamSettings(Frozen):
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


class HaDiscoverySettings(Frozen):
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
