"""Gateway settings: one frozen object, read once at the entry point and passed down.

Sources, highest first: keyword arguments, ``SENSORGATE_*`` environment variables
(nested with ``__``, e.g. ``SENSORGATE_INFLUX__URL``), the TOML config file, then the
defaults. Invalid settings are refused with :class:`~contract.errors.ConfigError`
naming the field. By section:

- :mod:`~gateway.settings.gateway`: :class:`GatewaySettings`, the whole, and the checks
  that span sections.
- :mod:`~gateway.settings.mqtt`: the MQTT source, its partitions, each role's user.
- :mod:`~gateway.settings.influx`: InfluxDB writes and retention.
- :mod:`~gateway.settings.flow`: ingest limits, stream steps, Home Assistant discovery.
- :mod:`~gateway.settings.load`: :func:`load_settings` and :func:`settings_env`.
- :mod:`~gateway.settings.base`: what every model shares.

May import ``contract``, ``edge.mqtt`` (the link settings), :mod:`gateway.statedir` and
the dashboard's own settings model; nothing else of the gateway.
"""

from __future__ import annotations

from gateway.settings.flow import HaDiscoverySettings, IngestSettings, StreamSettings
from gateway.settings.gateway import GatewaySettings
from gateway.settings.influx import InfluxSettings, RetentionSettings, retention_hours
from gateway.settings.load import CONFIG_ENV, load_settings, settings_env
from gateway.settings.mqtt import MqttIdentity, MqttRole, MqttSourceSettings

__all__ = [
    "CONFIG_ENV",
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
