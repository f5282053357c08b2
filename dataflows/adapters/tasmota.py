"""Tasmota: ``tele/<topic>/SENSOR``, ``tele/<topic>/STATE`` and the ``LWT``.

Topics follow the device's FullTopic (default ``%prefix%/%topic%/``; the adapter's
``topic`` option takes the same syntax, e.g. ``home/%topic%/%prefix%/``):

* ``SENSOR``: ``{"Time": "...", "<Sensor>": {"<Field>": value, ...}, "TempUnit": "C"}``.
  Each nested object is a sensor (``AM2301``, ``BME280``, ``DS18B20-1`` or, with
  ``ds18b20_by_id``, its ``Id``; ``ENERGY``), each numeric field a reading; arrays
  (three-phase ``Voltage: [230, 231, 229]``) become ``voltage_1`` ... Top-level numbers
  and switch states (``"Switch1": "ON"``) belong to sensor ``tasmota``.
  ``TempUnit: "F"`` is converted to °C; ``PressureUnit`` is kept and stated.
* ``STATE``: ``UptimeSec``, ``Heap``, ``LoadAvg``, ``Wifi.RSSI`` (%) and ``Wifi.Signal``
  (dBm) as readings of sensor ``state``; ``POWER`` per the enums.
* ``LWT``: the plain text ``Online`` / ``Offline`` (retained), as status.

``Time`` is the device's local time without zone unless ``SetOption52`` adds the offset:
set ``timezone`` to the devices' zone. Before NTP sync Tasmota reports 1970: the
arrival time is used then.
"""

from __future__ import annotations

from typing import Any

from dataflows.adapters.base import AdapterFailure, BaseAdapter
from dataflows.adapters.config import TasmotaConfig
from dataflows.adapters.result import AdapterResult, Telemetry
from dataflows.adapters.topicfilter import TopicFilter
from dataflows.adapters.values import decode_json, parse_time_us

__all__ = ["TasmotaAdapter"]

UNITS = {
    "temperature": "°C",
    "dew_point": "°C",
    "heat_index": "°C",
    "humidity": "%",
    "pressure": "hPa",
    "sea_pressure": "hPa",
    "illuminance": "lx",
    "power": "W",
    "apparent_power": "VA",
    "reactive_power": "var",
    "voltage": "V",
    "current": "A",
    "energy": "kWh",
    "energy_today": "kWh",
    "energy_yesterday": "kWh",
    "frequency": "Hz",
    "co2": "ppm",
    "uptime": "s",
    "rssi": "%",
    "signal": "dBm",
}
_SKIP_TOP = frozenset({"Time", "TempUnit", "PressureUnit", "SpeedUnit", "Epoch"})
_STATE_FIELDS = {
    "UptimeSec": "uptime",
    "Heap": "heap",
    "LoadAvg": "load_avg",
    "Sleep": "sleep",
    "MqttCount": "mqtt_count",
}
_KINDS = ("SENSOR", "STATE", "LWT")


class TasmotaAdapter(BaseAdapter):
    """Maps Tasmota telemetry (see the module docstring)."""

    kind = "tasmota"

    def __init__(self, config: TasmotaConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self.levels = config.topic.strip("/").split("/")
        self._prefix_at = self.levels.index("%prefix%")
        self._id_at = [
            i for i, level in enumerate(self.levels) if level in ("%topic%", "%hostname%", "%id%")
        ]
        self._depth = len(self.levels) + 1

    def filters(self) -> tuple[TopicFilter, ...]:
        """SENSOR and STATE shared; the retained LWT not."""
        base = "/".join(
            self.cfg.tele_prefix if lv == "%prefix%" else "+" if lv.startswith("%") else lv
            for lv in self.levels
        )
        return (
            TopicFilter(f"{base}/SENSOR", True),
            TopicFilter(f"{base}/STATE", True),
            TopicFilter(
                f"{base}/LWT",
                False,
                "retained last will: MQTT 5 sends no retained message to a shared subscription",
            ),
        )

    def _parse(self, topic: str) -> tuple[str, str] | None:
        """(device topic, SENSOR|STATE|LWT) or None."""
        parts = topic.split("/")
        if len(parts) != self._depth or parts[-1] not in _KINDS:
            return None
        for i, level in enumerate(self.levels):
            if i == self._prefix_at:
                if parts[i] != self.cfg.tele_prefix:
                    return None
            elif not level.startswith("%") and parts[i] != level:
                return None
        ident = "/".join(parts[i] for i in self._id_at)
        return (ident, parts[-1]) if ident else None

    def route_key(self, topic: str) -> str | None:
        """Return the device's Tasmota topic."""
        parsed = self._parse(topic)
        return None if parsed is None else parsed[0]

    def _adapt(self, topic: str, payload: bytes, received_us: int, out: AdapterResult) -> None:
        parsed = self._parse(topic)
        if parsed is None:
            raise AdapterFailure(f"topic {topic!r} does not match FullTopic {self.cfg.topic!r}")
        ident, kind = parsed
        site, device = self.device_of(ident)
        if kind == "LWT":
            text = payload.strip().strip(b'"').decode("utf-8", "replace")
            if text.lower() == self.cfg.online_payload.lower():
                self.status(out, site, device, True, received_us, "tasmota LWT")
            elif text.lower() == self.cfg.offline_payload.lower():
                self.status(out, site, device, False, received_us, "tasmota LWT")
            else:
                raise AdapterFailure(
                    f"LWT payload must be {self.cfg.online_payload!r} or"
                    f" {self.cfg.offline_payload!r}; got {text[:64]!r}"
                )
            return
        doc = decode_json(payload)
        if not isinstance(doc, dict):
            raise AdapterFailure(f"expected a JSON object; got {type(doc).__name__}")
        t_us, arrival = self.timed(parse_time_us(doc.get("Time"), self.zone), received_us)
        tel = self.telemetry(site, device, topic, payload, t_us, arrival=arrival)
        if kind == "STATE":
            if not self.cfg.state_metrics:
                out.ignored = "STATE readings are turned off (state_metrics = false)"
                return
            self._state(tel, out, doc, t_us)
        else:
            self._sensor(tel, out, doc, t_us)
        out.keep(tel, f"{kind} message without readings")

    def _sensor(self, tel: Telemetry, out: AdapterResult, doc: dict[str, Any], t_us: int) -> None:
        temp_unit = "°F" if str(doc.get("TempUnit", "C")).upper() == "F" else "°C"
        pressure_unit = doc.get("PressureUnit")
        units = dict(UNITS)
        if isinstance(pressure_unit, str) and pressure_unit:
            units["pressure"] = units["sea_pressure"] = pressure_unit
        for key, raw in doc.items():
            if key in _SKIP_TOP:
                continue
            if isinstance(raw, dict):
                sensor = key
                if self.cfg.ds18b20_by_id and key.startswith("DS18") and "Id" in raw:
                    sensor = str(raw["Id"])
                self._object(tel, out, sensor, raw, t_us, units, temp_unit)
            else:
                self._value(tel, out, "tasmota", key, raw, t_us, units, temp_unit)

    def _object(
        self,
        tel: Telemetry,
        out: AdapterResult,
        sensor: str,
        obj: dict[str, Any],
        t_us: int,
        units: dict[str, str],
        temp_unit: str,
    ) -> None:
        for field, raw in obj.items():
            if field == "Id":
                continue
            if isinstance(raw, dict):
                self._object(tel, out, f"{sensor}.{field}", raw, t_us, units, temp_unit)
            else:
                self._value(tel, out, sensor, field, raw, t_us, units, temp_unit)

    def _value(
        self,
        tel: Telemetry,
        out: AdapterResult,
        sensor: str,
        field: str,
        raw: Any,
        t_us: int,
        units: dict[str, str],
        temp_unit: str,
    ) -> None:
        metric = self.metric_name(field)
        unit = temp_unit if ("temperature" in metric or metric == "dew_point") else ""
        unit = unit or units.get(metric, "")
        if isinstance(raw, list):
            for i, item in enumerate(raw, start=1):
                self.add(tel, out, sensor, field, item, unit, t_us, metric=f"{metric}_{i}")
            return
        self.add(tel, out, sensor, field, raw, unit, t_us, metric=metric)

    def _state(self, tel: Telemetry, out: AdapterResult, doc: dict[str, Any], t_us: int) -> None:
        for key, metric in _STATE_FIELDS.items():
            if key in doc:
                self.add(
                    tel, out, "state", key, doc[key], UNITS.get(metric, ""), t_us, metric=metric
                )
        for key, raw in doc.items():
            if key.startswith("POWER") and isinstance(raw, str):
                # The relay state (ON/OFF): "power" is the ENERGY sensor's watts.
                self.add(tel, out, "state", key, raw, "", t_us, metric="relay" + key[5:])
        wifi = doc.get("Wifi")
        if isinstance(wifi, dict):
            for key in ("RSSI", "Signal", "LinkCount"):
                if key in wifi:
                    metric = self.metric_name(key)
                    self.add(tel, out, "wifi", key, wifi[key], UNITS.get(metric, ""), t_us)
