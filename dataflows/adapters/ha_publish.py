"""Discovery configs that make Home Assistant show SensorGate's alarms and aggregates.

The gateway publishes them (retained, QoS 1) when ``ha_discovery`` is on
(:mod:`gateway.connectors.ha_sink`); this module only builds the documents.

Per device (:func:`device_discovery`), on ``<discovery_prefix>/<component>/<node>/<object>/config``:

* a ``binary_sensor`` (device class ``problem``) that is on while the device has active
  alarms, read from the gateway's retained ``{prefix}/{site}/{device}/alarms/active``
  summary (``{"type": "io.sensorgate.alarm.active.v1", ..., "alarms": [...]}``), with the
  count and the rules as attributes;
* a ``sensor`` with the active alarm count.

Per series (:func:`series_discovery`): a ``sensor`` with the latest window's mean (min,
max, count and the window's start as attributes) from
``{prefix}/{site}/{device}/aggregates/{sensor}/{metric}``
(``{"type": "io.sensorgate.aggregate.v1", "mean": ..., ...}``).

The alarm entities name no availability topic on purpose: their state is the gateway's,
an offline device is itself an alarm (the binary sensor turns on), and devices that
come through adapters have no SensorGate status topic at all. Home Assistant evaluates
its own full Jinja, so the alarm templates use ``length``; the adapter's template
subset (:mod:`~dataflows.adapters.hatemplate`) reads the aggregate sensors only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from contract import DEFAULT_PREFIX, TopicScheme, check_id

__all__ = ["DiscoveryMessage", "device_discovery", "sensorgate_discovery", "series_discovery"]

_OBJECT_ID = re.compile(r"[^a-zA-Z0-9_-]+")


@dataclass(frozen=True, slots=True)
class DiscoveryMessage:
    """A retained message to publish."""

    topic: str
    payload: bytes
    retain: bool = True


def _oid(*parts: str) -> str:
    """Return an object id of Home Assistant's allowed class [a-zA-Z0-9_-]."""
    return _OBJECT_ID.sub("_", "_".join(parts)).strip("_") or "x"


def _node(site: str, device: str) -> str:
    return _oid("sensorgate", site, device)


def _device(site: str, device: str) -> dict[str, Any]:
    return {
        "identifiers": [f"sensorgate:{site}/{device}"],
        "name": f"{device} ({site})",
        "manufacturer": "SensorGate",
        "model": "device seen by the gateway",
    }


_ORIGIN = {"name": "SensorGate"}


def device_discovery(
    site: str,
    device: str,
    *,
    topics: TopicScheme | None = None,
    discovery_prefix: str = "homeassistant",
) -> list[DiscoveryMessage]:
    """Return the discovery messages of one device's alarm entities."""
    topics = topics or TopicScheme(DEFAULT_PREFIX)
    active = topics.alarms_active(site, device)  # checks the ids
    node = _node(site, device)
    dev = _device(site, device)
    alarms = {
        "name": "Alarm",
        "unique_id": f"{node}_alarm",
        "device_class": "problem",
        "state_topic": active,
        "value_template": "{{ 'ON' if (value_json.alarms | length) > 0 else 'OFF' }}",
        "json_attributes_topic": active,
        "json_attributes_template": (
            "{{ {'active_alarms': value_json.alarms | length,"
            " 'rules': value_json.alarms | map(attribute='rule') | list} | tojson }}"
        ),
        "device": dev,
        "origin": _ORIGIN,
    }
    count = {
        "name": "Active alarms",
        "unique_id": f"{node}_active_alarms",
        "state_topic": active,
        "value_template": "{{ value_json.alarms | length }}",
        "state_class": "measurement",
        "device": dev,
        "origin": _ORIGIN,
    }
    return [
        _message(discovery_prefix, "binary_sensor", node, "alarm", alarms),
        _message(discovery_prefix, "sensor", node, "active_alarms", count),
    ]


def series_discovery(
    site: str,
    device: str,
    sensor: str,
    metric: str,
    unit: str = "",
    *,
    topics: TopicScheme | None = None,
    discovery_prefix: str = "homeassistant",
    window: str = "1m",
) -> DiscoveryMessage:
    """Return the discovery message of one series' latest-window-mean sensor."""
    topics = topics or TopicScheme(DEFAULT_PREFIX)
    state = topics.aggregates(site, device, sensor, metric)  # checks the ids
    node = _node(site, device)
    oid = _oid(sensor, metric, window)
    config: dict[str, Any] = {
        "name": f"{sensor} {metric} ({window} mean)",
        "unique_id": f"{node}_{oid}",
        "state_topic": state,
        "value_template": "{{ value_json.mean }}",
        "json_attributes_topic": state,
        "json_attributes_template": (
            "{{ {'min': value_json.min, 'max': value_json.max, 'count': value_json.count,"
            " 'window_start': value_json.start} | tojson }}"
        ),
        "state_class": "measurement",
        "device": _device(site, device),
        "origin": _ORIGIN,
    }
    if unit:
        config["unit_of_measurement"] = unit
    return _message(discovery_prefix, "sensor", node, oid, config)


def sensorgate_discovery(
    site: str,
    device: str,
    series: Iterable[tuple[str, str, str]] = (),
    *,
    prefix: str = DEFAULT_PREFIX,
    discovery_prefix: str = "homeassistant",
    window: str = "1m",
) -> list[DiscoveryMessage]:
    """Return every discovery message of one device; ``series`` are (sensor, metric, unit)."""
    check_id("site", site)
    check_id("device", device)
    topics = TopicScheme(prefix)
    out = device_discovery(site, device, topics=topics, discovery_prefix=discovery_prefix)
    for sensor, metric, unit in series:
        out.append(
            series_discovery(
                site,
                device,
                sensor,
                metric,
                unit,
                topics=topics,
                discovery_prefix=discovery_prefix,
                window=window,
            )
        )
    return out


def _message(
    prefix: str, component: str, node: str, object_id: str, config: Mapping[str, object]
) -> DiscoveryMessage:
    topic = f"{prefix}/{component}/{node}/{object_id}/config"
    return DiscoveryMessage(topic, json.dumps(config, ensure_ascii=False, sort_keys=True).encode())
