"""Adapters for devices people already own: foreign MQTT payloads to SensorGate's data.

Zigbee2MQTT, Tasmota, Shelly (Gen1, Gen2/Gen3), Home Assistant MQTT discovery, Eclipse
Sparkplug B and Telegraf ``outputs.mqtt`` messages become what SensorGate's own edge
agent sends: readings of a (site, device) with a per-device sequence and an event id,
status changes, and dead letters (reason ``adapter_error``) for what cannot be mapped.
Pure logic: no broker, no Bytewax, no gateway import. Configured by a TOML file
(``SENSORGATE_ADAPTERS_FILE``, :func:`load_adapters`); :class:`AdapterSet` dispatches.
See docs/adapters.md.
"""

from dataflows.adapters.adapterset import AdapterSet, build_adapter
from dataflows.adapters.base import Adapter, BaseAdapter
from dataflows.adapters.config import AdaptersConfig, load_adapters, parse_adapters
from dataflows.adapters.ha_publish import (
    DiscoveryMessage,
    device_discovery,
    sensorgate_discovery,
    series_discovery,
)
from dataflows.adapters.result import (
    AdapterError,
    AdapterResult,
    Command,
    StatusChange,
    Telemetry,
)
from dataflows.adapters.topicfilter import TopicFilter

__all__ = [
    "Adapter",
    "AdapterError",
    "AdapterResult",
    "AdapterSet",
    "AdaptersConfig",
    "BaseAdapter",
    "Command",
    "DiscoveryMessage",
    "StatusChange",
    "Telemetry",
    "TopicFilter",
    "build_adapter",
    "device_discovery",
    "load_adapters",
    "parse_adapters",
    "sensorgate_discovery",
    "series_discovery",
]
