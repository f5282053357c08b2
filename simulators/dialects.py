"""The simulated fleet's readings in the dialects of devices people already own.

``sensorgate simulate --dialect zigbee2mqtt|tasmota|shelly|shelly1|homeassistant|sparkplug|
telegraf`` publishes what a Zigbee2MQTT bridge, a Tasmota device, a Shelly Gen2 or Gen1
device, a device announcing itself by Home Assistant MQTT discovery, a Sparkplug B edge
node or a Telegraf agent would, so the gateway's adapters can be tried end to end. A
:class:`DialectPublisher` sits between the fleet and the real publisher: it reads each
SensorGate telemetry event the fleet renders (trusted, our own JSON) and publishes its
readings in the dialect instead. The first message of each device is preceded by what
that family sends when it comes online (availability, LWT, NBIRTH, discovery configs),
retained where the family retains it.

Per family (``site`` and ``device`` are the simulated ones; configure the adapter with
the same site, or ``site_tag``/``site_from_group``, to get them back):

=============  ==============================================================
zigbee2mqtt    ``zigbee2mqtt/<device>`` ``{"temperature": ..., "last_seen": ISO}``
tasmota        ``tele/<device>/SENSOR`` ``{"Time", "<SENSOR>": {"Temperature"...}}``
shelly         ``<device>/events/rpc`` NotifyStatus with ``temperature:0``,
               ``humidity:0``, ``devicepower:0``, ``switch:0`` (other metrics have
               no Shelly component and are not published: :attr:`dropped`)
shelly1        Gen1 per-value topics, plain numbers: ``shellies/<device>/sensor/
               temperature|humidity|battery|lux``, ``.../relay/0/power|energy``
               (energy in Watt-minutes), ``.../emeter/0/voltage|current``; one
               message per reading (others dropped, as for ``shelly``); retained
               ``shellies/<device>/online`` ``true`` first
homeassistant  retained ``homeassistant/sensor/<device>/<object>/config`` per entity
               (``stat_t``, ``val_tpl`` ``{{ value_json.<object> }}``,
               ``unit_of_meas``, ``dev_cla`` for HA's own device classes, ``avty_t``,
               ``dev.ids``), retained ``sim-ha/<device>/availability`` ``online``,
               then ``sim-ha/<device>/state`` ``{"<object>": value, ...}``;
               object = the metric (``<sensor>_<metric>`` if a message repeats a
               metric); states carry no time (the adapter times them by arrival)
sparkplug      ``spBv1.0/<site>/NBIRTH|NDATA/<device>``, aliases after the birth
telegraf       ``telegraf/<device>/<sensor>`` line protocol, tags host and site
=============  ==============================================================

The Sparkplug payload is written by a small protobuf encoder,
:mod:`simulators.sparkplug_wire` (the simulators do not depend on the gateway's
generated code), which also cross-checks the adapter's decoder in the tests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from simulators.sparkplug_wire import SparkplugRenderer

if TYPE_CHECKING:  # a type only: the CLI reads DIALECTS without loading the links
    from simulators.links import Publisher

__all__ = [
    "DIALECTS",
    "DialectPublisher",
    "Reading",
    "Rendered",
    "make_renderer",
]

Reading = tuple[str, str, float, str, int]
"""(sensor, metric, value, unit, time in µs)."""
Rendered = tuple[str, bytes, bool]
"""(topic, payload, retain)."""
Renderer = Callable[[str, str, Sequence[Reading]], list[Rendered]]

DIALECTS = (
    "sensorgate",
    "zigbee2mqtt",
    "tasmota",
    "shelly",
    "shelly1",
    "homeassistant",
    "sparkplug",
    "telegraf",
)


def _iso(t_us: int, *, zone: bool = True, millis: bool = True) -> str:
    moment = datetime.fromtimestamp(t_us / 1_000_000, UTC)
    text = moment.isoformat(timespec="milliseconds" if millis else "seconds")
    return text.replace("+00:00", "Z") if zone else text.replace("+00:00", "")


class _Announced:
    """A family that announces each device once, retained, before its first message."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.dropped = 0

    def birth(self, device: str, topic: str, payload: bytes) -> list[Rendered]:
        """Return the announcement the first time ``device`` is seen, else nothing."""
        if device in self.seen:
            return []
        self.seen.add(device)
        return [(topic, payload, True)]


class _Zigbee2Mqtt(_Announced):
    def __call__(self, site: str, device: str, readings: Sequence[Reading]) -> list[Rendered]:
        out = self.birth(device, f"zigbee2mqtt/{device}/availability", b'{"state":"online"}')
        doc: dict[str, Any] = {metric: value for _s, metric, value, _u, _t in readings}
        doc["last_seen"] = _iso(readings[0][4])
        out.append((f"zigbee2mqtt/{device}", json.dumps(doc).encode(), False))
        return out


class _Tasmota(_Announced):
    def __call__(self, site: str, device: str, readings: Sequence[Reading]) -> list[Rendered]:
        out = self.birth(device, f"tele/{device}/LWT", b"Online")
        sensors: dict[str, dict[str, float]] = {}
        for sensor, metric, value, _unit, _t in readings:
            sensors.setdefault(sensor, {})[metric.capitalize()] = value
        # Tasmota's Time has whole seconds and no zone (the device's local time; UTC here).
        doc: dict[str, Any] = {"Time": _iso(readings[0][4], zone=False, millis=False)}
        doc.update(sensors)
        doc["TempUnit"] = "C"
        out.append((f"tele/{device}/SENSOR", json.dumps(doc).encode(), False))
        return out


_SHELLY = {
    "temperature": ("temperature:0", ("tC",)),
    "humidity": ("humidity:0", ("rh",)),
    "battery": ("devicepower:0", ("battery", "percent")),
    "power": ("switch:0", ("apower",)),
    "current": ("switch:0", ("current",)),
}


class _Shelly(_Announced):
    def __call__(self, site: str, device: str, readings: Sequence[Reading]) -> list[Rendered]:
        out = self.birth(device, f"{device}/online", b"true")
        params: dict[str, Any] = {"ts": round(readings[0][4] / 1_000_000, 3)}
        for _sensor, metric, value, _unit, _t in readings:
            where = _SHELLY.get(metric)
            if where is None:
                self.dropped += 1
                continue
            component, path = where
            node = params.setdefault(component, {"id": 0})
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
        doc = {"src": device, "dst": f"{device}/events", "method": "NotifyStatus", "params": params}
        out.append((f"{device}/events/rpc", json.dumps(doc).encode(), False))
        return out


# Gen1 topic tail per metric, and the factor to the unit the device publishes.
SHELLY1_TOPICS = {
    "temperature": ("sensor/temperature", 1.0),
    "humidity": ("sensor/humidity", 1.0),
    "battery": ("sensor/battery", 1.0),
    "illuminance": ("sensor/lux", 1.0),
    "power": ("relay/0/power", 1.0),
    "energy": ("relay/0/energy", 60.0),  # Gen1 counts Watt-minutes
    "voltage": ("emeter/0/voltage", 1.0),
    "current": ("emeter/0/current", 1.0),
}


class _Shelly1(_Announced):
    """One Gen1 message per reading, on the value's own topic (plain number)."""

    def __call__(self, site: str, device: str, readings: Sequence[Reading]) -> list[Rendered]:
        out = self.birth(device, f"shellies/{device}/online", b"true")
        for _sensor, metric, value, _unit, _t in readings:
            where = SHELLY1_TOPICS.get(metric)
            if where is None:
                self.dropped += 1
                continue
            tail, factor = where
            text = repr(value) if factor == 1.0 else format(value * factor, ".12g")
            out.append((f"shellies/{device}/{tail}", text.encode(), False))
        return out


# Home Assistant's own sensor device classes among SensorGate's usual metric names.
HA_DEVICE_CLASSES = frozenset(
    {
        "temperature",
        "humidity",
        "pressure",
        "power",
        "energy",
        "voltage",
        "current",
        "battery",
        "illuminance",
        "frequency",
        "power_factor",
        "carbon_dioxide",
        "signal_strength",
    }
)


class _HomeAssistant:
    """Discovery configs (retained) per entity, availability, then one JSON state."""

    def __init__(self) -> None:
        self.entities: dict[str, set[str]] = {}

    def __call__(self, site: str, device: str, readings: Sequence[Reading]) -> list[Rendered]:
        out: list[Rendered] = []
        state_topic = f"sim-ha/{device}/state"
        avty_topic = f"sim-ha/{device}/availability"
        known = self.entities.get(device)
        first = known is None
        if known is None:
            known = self.entities[device] = set()
        metrics = [m for _s, m, _v, _u, _t in readings]
        repeated = len(set(metrics)) < len(metrics)
        doc: dict[str, float] = {}
        for sensor, metric, value, unit, _t in readings:
            obj = f"{sensor}_{metric}" if repeated else metric
            doc[obj] = value
            if obj in known:
                continue
            known.add(obj)
            config: dict[str, Any] = {
                "name": obj,
                "uniq_id": f"{device}_{obj}",
                "stat_t": state_topic,
                "val_tpl": _ha_template(obj),
                "avty_t": avty_topic,
                "dev": {"ids": [device], "name": device},
            }
            if unit:
                config["unit_of_meas"] = unit
            if metric in HA_DEVICE_CLASSES:
                config["dev_cla"] = metric
            topic = f"homeassistant/sensor/{device}/{obj}/config"
            out.append((topic, json.dumps(config).encode(), True))
        if first:
            out.append((avty_topic, b"online", True))
        out.append((state_topic, json.dumps(doc).encode(), False))
        return out


def _ha_template(key: str) -> str:
    if key.isidentifier():
        return f"{{{{ value_json.{key} }}}}"
    return f"{{{{ value_json[{key!r}] }}}}"


class _Telegraf:
    def __call__(self, site: str, device: str, readings: Sequence[Reading]) -> list[Rendered]:
        by_sensor: dict[str, list[str]] = {}
        for sensor, metric, value, _unit, _t in readings:
            by_sensor.setdefault(sensor, []).append(f"{_lp(metric)}={value!r}")
        t_ns = readings[0][4] * 1000
        return [
            (
                f"telegraf/{device}/{sensor}",
                f"{_lp(sensor)},host={_lp(device)},site={_lp(site)}"
                f" {','.join(fields)} {t_ns}".encode(),
                False,
            )
            for sensor, fields in by_sensor.items()
        ]


def _lp(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def make_renderer(dialect: str) -> Renderer:
    """Return the renderer of one dialect (not ``sensorgate``, which needs none)."""
    factories: dict[str, Callable[[], Renderer]] = {
        "zigbee2mqtt": _Zigbee2Mqtt,
        "tasmota": _Tasmota,
        "shelly": _Shelly,
        "shelly1": _Shelly1,
        "homeassistant": _HomeAssistant,
        "sparkplug": SparkplugRenderer,
        "telegraf": _Telegraf,
    }
    if dialect not in factories:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {', '.join(DIALECTS)}")
    return factories[dialect]()


def _readings(payload: bytes) -> tuple[str, str, list[Reading]]:
    event = json.loads(payload)
    data = event["data"]
    out = []
    for r in data["readings"]:
        moment = datetime.fromisoformat(r["time"].replace("Z", "+00:00"))
        t_us = int(moment.timestamp()) * 1_000_000 + moment.microsecond
        out.append((r["sensor"], r["metric"], r["value"], r.get("unit", ""), t_us))
    return data["site"], data["device"], out


class DialectPublisher:
    """A :class:`~simulators.links.Publisher` that re-renders telemetry in a dialect.

    Counts (``published``, ``acknowledged``) are the inner publisher's: MQTT messages,
    which may be more than the fleet's events (births, several Telegraf measurements).
    """

    def __init__(self, inner: Publisher, dialect: str) -> None:
        self.inner = inner
        self.dialect = dialect
        self.render = make_renderer(dialect)
        self._lock = threading.Lock()

    @property
    def dropped(self) -> int:
        """Readings that have no place in the dialect (Shelly: no such component or topic)."""
        return int(getattr(self.render, "dropped", 0))

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, key: int = 0
    ) -> None:
        """Publish the dialect's messages for one SensorGate telemetry event."""
        site, device, readings = _readings(payload)
        if not readings:
            return
        with self._lock:
            messages = self.render(site, device, readings)
        for out_topic, out_payload, out_retain in messages:
            self.inner.publish(out_topic, out_payload, qos=qos, retain=out_retain, key=key)

    @property
    def published(self) -> int:
        """Messages handed to the inner publisher."""
        return self.inner.published

    @property
    def acknowledged(self) -> int:
        """Messages the broker acknowledged."""
        return self.inner.acknowledged

    def wait_acknowledged(self, timeout: float) -> bool:
        """Wait for the inner publisher."""
        return self.inner.wait_acknowledged(timeout)
