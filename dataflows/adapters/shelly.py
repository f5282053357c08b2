"""Shelly: Gen1 per-value topics and Gen2/Gen3 RPC notifications.

Gen1 (``shellies/<id>/...``, one plain value per topic, no time: arrival time):

====================================  ==================  ============  ==========
topic tail                            sensor              metric        unit
====================================  ==================  ============  ==========
``relay/<i>/power``                   ``relay:<i>``       power         W
``relay/<i>/energy`` (Watt-minutes)   ``relay:<i>``       energy        Wh (÷ 60)
``relay/<i>`` (``on``/``off``)        ``relay:<i>``       state         1/0
``emeter/<i>/<v>``                    ``emeter:<i>``      <v>           see table
``temperature``, ``voltage``          ``device``          ...           °C, V
``sensor/<v>``                        ``sensor``          <v>           °C/%/lx/%
``ext_temperature/<i>``               ``ext:<i>``         temperature   °C
``online`` (``true``/``false``)       status (retained)
====================================  ==================  ============  ==========

Gen2/Gen3 (``<prefix>/events/rpc`` ``NotifyStatus``/``NotifyFullStatus`` with ``ts``;
``<prefix>/status/<component>`` without): each component (``switch:0``,
``temperature:0``, ``humidity:0``, ``devicepower:0``...) is a sensor; its numeric fields
are readings (``apower`` -> power W, ``aenergy.total`` -> energy Wh, ``tC`` ->
temperature °C, ``rh`` -> humidity %, ``battery.percent`` -> battery %,
``output`` -> state). ``NotifyEvent`` (button pushes...) is ignored. ``<prefix>/online``
is status.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

from dataflows.adapters.base import AdapterFailure, BaseAdapter, ValueTopic
from dataflows.adapters.config import ShellyConfig
from dataflows.adapters.ids import IdRefused
from dataflows.adapters.naming import FAHRENHEIT, is_temperature
from dataflows.adapters.result import AdapterResult, Telemetry
from dataflows.adapters.topicfilter import TopicFilter, matches
from dataflows.adapters.values import decode_json, parse_time_us

__all__ = ["ShellyAdapter"]

_RETAINED = "retained online flag: MQTT 5 sends no retained message to a shared subscription"

GEN1_UNITS = {
    "power": "W",
    "reactive_power": "var",
    "voltage": "V",
    "current": "A",
    "energy": "Wh",
    "returned_energy": "Wh",
    "total": "Wh",
    "total_returned": "Wh",
    "temperature": "°C",
    "humidity": "%",
    "battery": "%",
    "lux": "lx",
    "pf": "",
}
_WATT_MINUTES = frozenset({"energy", "returned_energy"})
_GEN1_METRIC = {"lux": "illuminance", "pf": "power_factor", "total": "energy_total"}

# Gen2 field paths (joined with '.') -> (metric, unit)
GEN2_FIELDS = {
    "apower": ("power", "W"),
    "act_power": ("power", "W"),
    "aprt_power": ("apparent_power", "VA"),
    "voltage": ("voltage", "V"),
    "current": ("current", "A"),
    "freq": ("frequency", "Hz"),
    "pf": ("power_factor", ""),
    "aenergy.total": ("energy", "Wh"),
    "ret_aenergy.total": ("energy_returned", "Wh"),
    "temperature.tC": ("temperature", "°C"),
    "tC": ("temperature", "°C"),
    "rh": ("humidity", "%"),
    "battery.percent": ("battery", "%"),
    "battery.V": ("voltage", "V"),
    "lux": ("illuminance", "lx"),
    "output": ("state", ""),
    "rssi": ("rssi", "dBm"),
    "uptime": ("uptime", "s"),
}


class ShellyAdapter(BaseAdapter):
    """Maps Shelly Gen1 and Gen2/Gen3 messages (see the module docstring)."""

    kind = "shelly"

    def __init__(self, config: ShellyConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self._gen1_head = config.topic + "/"
        self._gen2 = [(p, p.count("/") + 1) for p in config.gen2_prefixes]
        self._value_topics: dict[str, ValueTopic | None] = {}

    def filters(self) -> tuple[TopicFilter, ...]:
        """Gen1 values and Gen2 notifications shared; the retained ``online`` not."""
        out: list[TopicFilter] = []
        if self.cfg.gen1:
            base = self.cfg.topic
            out += [
                TopicFilter(f"{base}/+/relay/#", True),
                TopicFilter(f"{base}/+/emeter/#", True),
                TopicFilter(f"{base}/+/sensor/#", True),
                TopicFilter(f"{base}/+/temperature", True),
                TopicFilter(f"{base}/+/voltage", True),
                TopicFilter(f"{base}/+/ext_temperature/+", True),
                TopicFilter(f"{base}/+/ext_humidity/+", True),
                TopicFilter(f"{base}/+/online", False, _RETAINED),
            ]
        for prefix, _ in self._gen2:
            out += [
                TopicFilter(f"{prefix}/events/rpc", True),
                TopicFilter(f"{prefix}/status/+", True),
                TopicFilter(f"{prefix}/online", False, _RETAINED),
            ]
        return tuple(out)

    def _parse(self, topic: str) -> tuple[int, str, list[str]] | None:
        """Return (generation, foreign device id, levels after it) or None."""
        if self.cfg.gen1 and topic.startswith(self._gen1_head):
            ident, _, rest = topic[len(self._gen1_head) :].partition("/")
            if ident and rest:
                return 1, ident, rest.split("/")
        parts = topic.split("/")
        for prefix, depth in self._gen2:
            if len(parts) <= depth:
                continue
            head = "/".join(parts[:depth])
            tail = parts[depth:]
            if tail[0] not in ("events", "status", "online") or not matches(prefix, head):
                continue
            return 2, head, tail
        return None

    def route_key(self, topic: str) -> str | None:
        """Return the device's id (Gen1) or topic prefix (Gen2)."""
        parsed = self._parse(topic)
        return None if parsed is None else f"{parsed[0]}:{parsed[1]}"

    def _adapt(self, topic: str, payload: bytes, received_us: int, out: AdapterResult) -> None:
        parsed = self._parse(topic)
        if parsed is None:
            raise AdapterFailure(f"topic {topic!r} is neither Gen1 nor a configured Gen2 prefix")
        gen, ident, tail = parsed
        if tail == ["online"]:
            text = payload.strip().strip(b'"').lower()
            if text not in (b"true", b"false"):
                raise AdapterFailure(f"online payload must be true or false; got {payload[:64]!r}")
            site, device = self.device_of(ident)
            self.status(out, site, device, text == b"true", received_us, f"shelly gen{gen} online")
            return
        if gen == 1:
            self._gen1(ident, tail, topic, payload, received_us, out)
        else:
            self._gen2_message(ident, tail, topic, payload, received_us, out)

    # -- Gen1 -----------------------------------------------------------------------

    def value_topic(self, topic: str) -> ValueTopic | None:
        """Return a Gen1 value topic's mapping (cached); None for anything else."""
        hit: ValueTopic | Literal[False] | None = self._value_topics.get(topic, False)
        if hit is False:
            hit = None
            with contextlib.suppress(IdRefused):
                hit = self._gen1_value_topic(topic)
            if len(self._value_topics) >= 100_000:  # bounded: topics are not trusted
                self._value_topics.clear()
            self._value_topics[topic] = hit
        return hit

    def _gen1_value_topic(self, topic: str) -> ValueTopic | None:
        parsed = self._parse(topic)
        if parsed is None or parsed[0] != 1 or parsed[2] == ["online"]:
            return None
        where = _gen1_field(parsed[2])
        if where is None or where[1] in self.exclude or not self.coerce.plain_numbers(where[1]):
            return None
        sensor, field = where
        site, device = self.device_of(parsed[1])
        metric, unit, factor = self._gen1_mapping(sensor, field)
        unit = self.config.units.get(metric, unit)  # as BaseAdapter.add applies it
        return ValueTopic(
            site,
            device,
            self.ids("sensor", sensor),
            self.ids("metric", metric),
            factor,
            unit in FAHRENHEIT and is_temperature(metric),
        )

    def _gen1_mapping(self, sensor: str, field: str) -> tuple[str, str, float]:
        """Return the metric, the unit and the factor of a Gen1 value (one place for both paths)."""
        unit = GEN1_UNITS.get(field, "")
        if field == "temperature" and sensor == "sensor" and self.cfg.gen1_temperature_unit == "F":
            unit = "°F"
        factor = 1.0 / 60.0 if field in _WATT_MINUTES else 1.0
        return _GEN1_METRIC.get(field) or self.metric_name(field), unit, factor

    def _gen1(
        self,
        ident: str,
        tail: list[str],
        topic: str,
        payload: bytes,
        received_us: int,
        out: AdapterResult,
    ) -> None:
        where = _gen1_field(tail)
        if where is None:
            out.ignored = f"Gen1 topic tail {'/'.join(tail)!r} carries no reading"
            return
        sensor, field = where
        site, device = self.device_of(ident)
        text = payload.decode("utf-8", "replace").strip()
        tel = self.telemetry(site, device, topic, payload, received_us, arrival=True)
        metric, unit, factor = self._gen1_mapping(sensor, field)
        if not self.add(
            tel, out, sensor, field, text, unit, received_us, metric=metric, factor=factor
        ):
            # Words (overpower, open), JSON lists: not readings, like strings elsewhere.
            out.ignored = f"{'/'.join(tail)!r} value {payload[:64]!r} is not a number"
            return
        out.telemetry.append(tel)

    # -- Gen2 -----------------------------------------------------------------------

    def _gen2_message(
        self,
        ident: str,
        tail: list[str],
        topic: str,
        payload: bytes,
        received_us: int,
        out: AdapterResult,
    ) -> None:
        doc = decode_json(payload)
        if not isinstance(doc, dict):
            raise AdapterFailure(f"expected a JSON object; got {type(doc).__name__}")
        foreign = ident
        if tail[0] == "events":
            method = doc.get("method")
            if method == "NotifyEvent":
                out.ignored = "NotifyEvent carries events, not status"
                return
            if method not in ("NotifyStatus", "NotifyFullStatus"):
                raise AdapterFailure(
                    f"expected method NotifyStatus or NotifyFullStatus; got {method!r}"
                )
            params = doc.get("params")
            if not isinstance(params, dict):
                raise AdapterFailure("NotifyStatus without a params object")
            if self.cfg.device_from == "src" and isinstance(doc.get("src"), str):
                foreign = doc["src"]
            t_us, arrival = self.timed(parse_time_us(params.get("ts")), received_us)
            components = {k: v for k, v in params.items() if isinstance(v, dict)}
        elif len(tail) == 2:
            t_us, arrival = received_us, True
            components = {tail[1]: doc}
        else:
            out.ignored = f"Gen2 topic tail {'/'.join(tail)!r} carries no status"
            return
        site, device = self.device_of(foreign)
        tel = self.telemetry(site, device, topic, payload, t_us, arrival=arrival)
        for component, status in components.items():
            self._component(tel, out, component, status, "", t_us)
        out.keep(tel, "no numeric status fields")

    def _component(
        self,
        tel: Telemetry,
        out: AdapterResult,
        component: str,
        status: dict[str, Any],
        prefix: str,
        t_us: int,
    ) -> None:
        for key, raw in status.items():
            path = prefix + key
            if key in self.exclude:
                out.skipped += 1
                continue
            if isinstance(raw, dict):
                self._component(tel, out, component, raw, path + ".", t_us)
                continue
            if isinstance(raw, list):
                out.skipped += 1
                continue
            known = GEN2_FIELDS.get(path)
            if known is not None:
                metric, unit = known
            else:
                metric, unit = self.metric_name(path.replace(".", "_")), ""
            self.add(tel, out, component, key, raw, unit, t_us, metric=metric)


def _gen1_field(tail: list[str]) -> tuple[str, str] | None:
    """(sensor, field) of a Gen1 topic tail, or None if it is no reading."""
    n = len(tail)
    head = tail[0]
    if head in ("relay", "emeter", "light", "roller", "meter") and n >= 2:
        if not tail[1].isdigit():
            return None
        sensor = f"{head}:{tail[1]}"
        if n == 2:
            return (sensor, "state") if head == "relay" else None
        if n == 3 and tail[2] not in ("command", "status", "pos"):
            return sensor, tail[2]
        return None
    if head in ("ext_temperature", "ext_humidity") and n == 2:
        return f"ext:{tail[1]}", head.removeprefix("ext_")
    if head == "sensor" and n == 2:
        return "sensor", tail[1]
    if n == 1 and head in ("temperature", "voltage", "overtemperature", "temperature_f"):
        return "device", head
    return None
