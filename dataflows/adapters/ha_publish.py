"""Discovery configs SensorGate would publish so Home Assistant shows its alarms and aggregates.

Per device, retained on ``<discovery_prefix>/.../config``:

* a ``binary_sensor`` (device class ``problem``) that is on while the device has active
  alarms, read from the gateway's retained ``{prefix}/{site}/{device}/alarms/active``
  summary (``{"type": "io.sensorgate.alarm.active.v1", ..., "alarms": [...]}``), with the
  count as an attribute;
* a ``sensor`` with the active alarm count;
* per series, a ``sensor`` with the latest window's mean (min, max and count as
  attributes) from ``{prefix}/{site}/{device}/aggregates/{sensor}/{metric}``.

The aggregates topic is a proposal: the gateway does not publish it yet (see
docs/adapters.md, "Wiring"). Home Assistant evaluates its own full Jinja, so these
templates may use ``length``; the adapter's subset applies only to what it reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from contract import DEFAULT_PREFIX, check_id

__all__ = ["DiscoveryMessage", "sensorgate_discovery"]

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


def sensorgate_discovery(
    site: str,
    device: str,
    series: Iterable[tuple[str, str, str]] = (),
    *,
    prefix: str = DEFAULT_PREFIX,
    discovery_prefix: str = "homeassistant",
    window: str = "1m",
) -> list[DiscoveryMessage]:
    """Return the discovery messages for one device; ``series`` are (sensor, metric, unit)."""
    check_id("site", site)
    check_id("device", device)
    node = _oid("sensorgate", site, device)
    base = f"{prefix}/{site}/{device}"
    dev = {
        "identifiers": [f"sensorgate:{site}/{device}"],
        "name": f"{device} ({site})",
        "manufacturer": "SensorGate",
        "model": "device seen by the gateway",
    }
    origin = {"name": "SensorGate"}
    availability = {"topic": f"{base}/status", "value_template": _STATUS_TEMPLATE}
    out = []
    alarms = {
        "name": "Alarm",
        "unique_id": f"{node}_alarm",
        "device_class": "problem",
        "state_topic": f"{base}/alarms/active",
        "value_template": "{{ 'ON' if (value_json.alarms | length) > 0 else 'OFF' }}",
        "json_attributes_topic": f"{base}/alarms/active",
        "json_attributes_template": (
            "{{ {'active_alarms': value_json.alarms | length,"
            " 'rules': value_json.alarms | map(attribute='rule') | list} | tojson }}"
        ),
        "availability": [availability],
        "device": dev,
        "origin": origin,
    }
    out.append(_message(discovery_prefix, "binary_sensor", node, "alarm", alarms))
    count = {
        "name": "Active alarms",
        "unique_id": f"{node}_active_alarms",
        "state_topic": f"{base}/alarms/active",
        "value_template": "{{ value_json.alarms | length }}",
        "state_class": "measurement",
        "device": dev,
        "origin": origin,
    }
    out.append(_message(discovery_prefix, "sensor", node, "active_alarms", count))
    for sensor, metric, unit in series:
        check_id("sensor", sensor)
        check_id("metric", metric)
        oid = _oid(sensor, metric, window)
        config = {
            "name": f"{sensor} {metric} ({window} mean)",
            "unique_id": f"{node}_{oid}",
            "state_topic": f"{base}/aggregates/{sensor}/{metric}",
            "value_template": "{{ value_json.mean }}",
            "json_attributes_topic": f"{base}/aggregates/{sensor}/{metric}",
            "json_attributes_template": (
                "{{ {'min': value_json.min, 'max': value_json.max, 'count': value_json.count,"
                " 'window_start': value_json.start} | tojson }}"
            ),
            "state_class": "measurement",
            "device": dev,
            "origin": origin,
        }
        if unit:
            config["unit_of_measurement"] = unit
        out.append(_message(discovery_prefix, "sensor", node, oid, config))
    return out


_STATUS_TEMPLATE = (
    "{{ 'online' if value_json.type == 'io.sensorgate.device.online.v1' else 'offline' }}"
)


def _message(
    prefix: str, component: str, node: str, object_id: str, config: Mapping[str, object]
) -> DiscoveryMessage:
    topic = f"{prefix}/{component}/{node}/{object_id}/config"
    return DiscoveryMessage(topic, json.dumps(config, ensure_ascii=False, sort_keys=True).encode())
