"""Zigbee2MQTT: device state JSON, per-device availability and the bridge state.

Topics (``<base>`` is Zigbee2MQTT's ``base_topic``, default ``zigbee2mqtt``):

* ``<base>/<friendly_name>``: the device's state, a JSON object; every numeric field is
  a reading of sensor ``zigbee`` (nested objects flatten to ``color_x``), booleans and
  enums per configuration, other strings skipped. ``last_seen`` (when Zigbee2MQTT's
  ``advanced.last_seen`` is on) dates the readings; otherwise the arrival does.
* ``<base>/<friendly_name>/availability``: ``{"state":"online"}`` or, with
  ``legacy_availability_payload``, the plain text ``online`` / ``offline`` (retained).
* ``<base>/bridge/state``: the bridge itself, same two forms.
* ``<friendly_name>/set``, ``/get``, other ``bridge/*`` topics: requests and bridge
  chatter, counted as ignored (only seen with ``nested_names``).

Units follow Zigbee2MQTT's exposes; ``voltage`` is mV on battery devices (the message
has ``battery``) and V on mains devices.
"""

from __future__ import annotations

from typing import Any

from dataflows.adapters.base import AdapterFailure, BaseAdapter
from dataflows.adapters.config import Zigbee2MqttConfig
from dataflows.adapters.result import AdapterResult
from dataflows.adapters.topicfilter import TopicFilter
from dataflows.adapters.values import decode_json, parse_time_us

__all__ = ["Zigbee2MqttAdapter", "availability_state"]

UNITS = {
    "temperature": "°C",
    "device_temperature": "°C",
    "local_temperature": "°C",
    "humidity": "%",
    "soil_moisture": "%",
    "pressure": "hPa",
    "battery": "%",
    "illuminance": "lx",
    "linkquality": "lqi",
    "power": "W",
    "energy": "kWh",
    "current": "A",
    "co2": "ppm",
    "voc": "ppb",
    "formaldehyd": "mg/m³",
    "pm25": "µg/m³",
    "pm10": "µg/m³",
}
_IGNORED_TAILS = ("set", "get")


def availability_state(payload: bytes) -> bool | None:
    """Read an availability payload, JSON ``{"state": ...}`` or legacy text; None if neither."""
    text = payload.strip()
    if text.startswith(b"{"):
        try:
            doc = decode_json(text)
        except ValueError:
            return None
        state = doc.get("state") if isinstance(doc, dict) else None
        text = state.encode() if isinstance(state, str) else b""
    low = text.strip(b'"').lower()
    if low == b"online":
        return True
    if low == b"offline":
        return False
    return None


class Zigbee2MqttAdapter(BaseAdapter):
    """Maps Zigbee2MQTT messages (see the module docstring)."""

    kind = "zigbee2mqtt"

    def __init__(self, config: Zigbee2MqttConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self.base = config.topic
        self._head = config.topic + "/"

    def filters(self) -> tuple[TopicFilter, ...]:
        """State shared; availability and bridge state retained, so not shared."""
        base = self.base
        retained = "retained state: MQTT 5 sends no retained message to a shared subscription"
        if self.cfg.nested_names:
            return (TopicFilter(f"{base}/#", False, retained + " (nested names: one filter)"),)
        return (
            TopicFilter(f"{base}/+", True),
            TopicFilter(f"{base}/+/availability", False, retained),
            TopicFilter(f"{base}/bridge/state", False, retained),
        )

    def _split(self, topic: str) -> tuple[str, str] | None:
        """(friendly name, tail) where tail is '', 'availability', 'set'...; None if not ours."""
        if not topic.startswith(self._head):
            return None
        rest = topic[len(self._head) :]
        if not rest:
            return None
        if rest.startswith("bridge/") or rest == "bridge":
            return "bridge", rest[7:]
        name, _, tail = rest.rpartition("/")
        if name and tail in ("availability", *_IGNORED_TAILS):
            return name, tail
        if name and not self.cfg.nested_names:
            return None
        return rest, ""

    def route_key(self, topic: str) -> str | None:
        """Return the friendly name."""
        split = self._split(topic)
        return None if split is None else split[0]

    def _adapt(self, topic: str, payload: bytes, received_us: int, out: AdapterResult) -> None:
        split = self._split(topic)
        if split is None:
            raise AdapterFailure(f"topic {topic!r} is not under {self._head!r}")
        name, tail = split
        if name == "bridge":
            if tail != "state":
                out.ignored = f"bridge topic {tail!r} carries no telemetry"
                return
            self._availability(self.cfg.bridge_device, payload, received_us, out, "bridge")
            return
        if tail == "availability":
            self._availability(name, payload, received_us, out, "availability")
            return
        if tail:
            out.ignored = f"{tail!r} is a request to the device, not its state"
            return
        doc = decode_json(payload)
        if not isinstance(doc, dict):
            raise AdapterFailure(
                f"expected a JSON object of device state; got {type(doc).__name__}"
            )
        site, device = self.device_of(name)
        t_us, arrival = self.timed(parse_time_us(doc.get("last_seen"), self.zone), received_us)
        tel = self.telemetry(site, device, topic, payload, t_us, arrival=arrival)
        battery = "battery" in doc
        self._fields(tel, out, doc, "", t_us, battery)
        out.keep(tel, "state message without fields")

    def _fields(
        self,
        tel: Any,
        out: AdapterResult,
        doc: dict[str, Any],
        prefix: str,
        t_us: int,
        battery: bool,
    ) -> None:
        sensor = self.cfg.sensor
        for key, raw in doc.items():
            field = prefix + key
            if key in self.exclude or field in self.exclude:
                out.skipped += 1
                continue
            if isinstance(raw, dict):
                self._fields(tel, out, raw, field + "_", t_us, battery)
                continue
            if isinstance(raw, list):
                out.skipped += 1
                continue
            metric = self.metric_name(field)
            unit = UNITS.get(metric, "")
            if metric == "voltage":
                unit = "mV" if battery else "V"
            self.add(tel, out, sensor, field, raw, unit, t_us, metric=metric)

    def _availability(
        self, name: str, payload: bytes, received_us: int, out: AdapterResult, reason: str
    ) -> None:
        state = availability_state(payload)
        if state is None:
            raise AdapterFailure(
                f'availability payload must be {{"state":"online"|"offline"}} or the'
                f" legacy text online/offline; got {payload[:64]!r}"
            )
        site, device = self.device_of(name)
        self.status(out, site, device, state, received_us, f"zigbee2mqtt {reason}")
