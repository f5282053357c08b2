"""The burst of ``sensorgate bench-adapters`` in each foreign dialect, and its adapters file.

The benchmark's workload (:class:`~gateway.bench.workload.Workload`: devices, readings
per message, total) is rendered once per dialect by the simulator's own encoders
(:func:`simulators.dialects.make_renderer`, what ``sensorgate simulate --dialect``
publishes), before the clock starts. Each dialect carries what it can in one message:

===========  =================================================================  =========
dialect      one message                                                        readings
===========  =================================================================  =========
native       SensorGate telemetry event, sensors ``s0..``, metrics ``m0..m9``   R
zigbee2mqtt  ``zigbee2mqtt/<device>`` state JSON, fields ``m0..m(R-1)``        R
tasmota      ``tele/<device>/SENSOR``, objects ``s0, s1..`` of 5 fields each    R
shelly       ``<device>/events/rpc`` NotifyStatus: ``temperature:0``,          min(R, 5)
             ``humidity:0``, ``devicepower:0``, ``switch:0`` (power, current)
shelly1      Shelly Gen1: one plain number per topic, ``shellies/<device>/``    1
             ``sensor/temperature|humidity|battery|lux``, ``relay/0/power|``
             ``energy``, ``emeter/0/voltage|current``: min(R, 8) messages per
             device and tick
homeassistant ``sim-ha/<device>/state`` JSON ``{"m0": .., "m(R-1)": ..}``,      R
             read through the learned entities' ``{{ value_json.m<j> }}``
sparkplug    ``spBv1.0/bench/NBIRTH|NDATA/<device>``, metrics ``s<k>/m<j>``    R
             (the birth carries the first message's values; DATA by alias)
telegraf     ``telegraf/<device>/s0``, one line of R fields                     R
===========  =================================================================  =========

R is the workload's readings per message; Shelly Gen2 has no more numeric components
for the renderer to fill, so its messages carry at most five; a Shelly Gen1 device
has eight value topics here, each its own message. A *tick* is one device's readings
at one time (the workload's message); the number of ticks is ``total // carried``, so
every dialect brings about the same number of readings. Before a device's first tick
comes what its family sends when it comes online (Zigbee2MQTT availability, Tasmota
LWT, Shelly ``online``; Home Assistant's discovery config per entity, then its
availability; all retained): status and discovery, not readings.
:attr:`DialectBurst.readings` counts the readings the messages carry, which is what
the gateway must store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from contract.errors import ConfigError
from gateway.bench.workload import (
    METRICS,
    SITE,
    Workload,
    burst_base_us,
    device_id,
    render_burst,
)
from simulators.dialects import SHELLY1_TOPICS, make_renderer

__all__ = [
    "BENCH_DIALECTS",
    "DialectBurst",
    "adapters_toml",
    "carried_per_message",
    "dialect_workload",
    "reading_messages",
    "reading_names",
    "render_dialect_burst",
]

BENCH_DIALECTS = (
    "native",
    "zigbee2mqtt",
    "tasmota",
    "shelly",
    "shelly1",
    "homeassistant",
    "sparkplug",
    "telegraf",
)
"""What ``bench-adapters`` can run; ``native`` is SensorGate's own events (the baseline)."""

_SHELLY_METRICS = ("temperature", "humidity", "battery", "power", "current")
_SHELLY1_METRICS = tuple(SHELLY1_TOPICS)
_FIELDS_PER_OBJECT = 5  # Tasmota sensor objects and Sparkplug folders: 5 values each
_VALUES = [round(20.0 + 5.0 * math.sin(i / 7.0), 3) for i in range(997)]

# One [[adapter]] table per family, with the options of deploy/adapters/*.toml that
# matter here; the site is the workload's, and Tasmota's Time is UTC (the renderer's).
_ADAPTERS = {
    "zigbee2mqtt": """
[[adapter]]
name = "z2m"
kind = "zigbee2mqtt"
topic = "zigbee2mqtt"
site = "{site}"
sensor = "zigbee"
""",
    "tasmota": """
[[adapter]]
name = "tasmota"
kind = "tasmota"
topic = "%prefix%/%topic%/"
tele_prefix = "tele"
site = "{site}"
timezone = "UTC"
""",
    "shelly": """
[[adapter]]
name = "shelly"
kind = "shelly"
topic = "shellies"
gen1 = true
gen2_prefixes = ["+"]
device_from = "topic"
site = "{site}"
""",
    "homeassistant": """
[[adapter]]
name = "ha"
kind = "homeassistant"
topic = "homeassistant"
state_filters = ["sim-ha/+/state", "sim-ha/+/availability"]
components = ["sensor", "binary_sensor"]
device_from = "identifiers"
site = "{site}"
""",
    "sparkplug": """
[[adapter]]
name = "sparkplug"
kind = "sparkplug"
topic = "spBv1.0"
site_from_group = true
rebirth = true
""",
    "telegraf": """
[[adapter]]
name = "telegraf"
kind = "telegraf"
topic = "telegraf"
format = "auto"
precision = "auto"
device_tag = "host"
site_tag = "site"
site = "{site}"
""",
}
# Shelly Gen1 takes the same adapter as Gen2 (deploy/adapters/shelly.toml reads both).
_ADAPTERS["shelly1"] = _ADAPTERS["shelly"]


def _check(dialect: str) -> None:
    if dialect not in BENCH_DIALECTS:
        raise ConfigError(
            "dialects", f"expected some of {', '.join(BENCH_DIALECTS)}; got {dialect!r}"
        )


def carried_per_message(workload: Workload, dialect: str) -> int:
    """Return how many of a tick's readings ``dialect`` carries (Shelly: at most 5 or 8)."""
    _check(dialect)
    if dialect == "shelly":
        return min(workload.readings_per_message, len(_SHELLY_METRICS))
    if dialect == "shelly1":
        return min(workload.readings_per_message, len(_SHELLY1_METRICS))
    return workload.readings_per_message


def reading_messages(workload: Workload, dialect: str) -> tuple[int, int]:
    """Return (readings per MQTT message, MQTT messages carrying readings) per round.

    One per tick, except Shelly Gen1 (one message per reading).
    """
    shaped = dialect_workload(workload, dialect)
    if dialect == "shelly1":
        return 1, shaped.total
    return shaped.readings_per_message, shaped.messages


def dialect_workload(workload: Workload, dialect: str) -> Workload:
    """Return ``workload`` as ``dialect`` carries it: readings per message and total."""
    per = carried_per_message(workload, dialect)
    if per == workload.readings_per_message:
        return workload
    return replace(workload, readings_per_message=per, total=(workload.total // per) * per)


def reading_names(workload: Workload, dialect: str) -> list[tuple[str, str]]:
    """Return the (sensor, metric) of each reading of a message, in ``dialect``."""
    _check(dialect)
    rpm = carried_per_message(workload, dialect)
    if dialect == "native":
        return [(f"s{j % workload.sensors_per_device}", f"m{j % METRICS}") for j in range(rpm)]
    if dialect == "shelly":
        return [("s0", m) for m in _SHELLY_METRICS[:rpm]]
    if dialect == "shelly1":
        return [("s0", m) for m in _SHELLY1_METRICS[:rpm]]
    if dialect in ("zigbee2mqtt", "telegraf", "homeassistant"):
        return [("s0", f"m{j}") for j in range(rpm)]
    return [(f"s{j // _FIELDS_PER_OBJECT}", f"m{j}") for j in range(rpm)]


def adapters_toml(dialect: str, site: str = SITE) -> str | None:
    """Return the adapters file that enables ``dialect``'s family (None for native)."""
    _check(dialect)
    if dialect == "native":
        return None
    return _ADAPTERS[dialect].format(site=site).lstrip()


@dataclass(frozen=True, slots=True)
class DialectBurst:
    """Rendered messages of one dialect, in publishing order."""

    dialect: str
    workload: Workload
    """The workload as the dialect carries it (:func:`dialect_workload`)."""
    base_us: int
    topics: list[str]
    payloads: list[bytes]
    retain: list[bool]
    readings: int
    """Readings the messages carry: what the gateway must store."""

    @property
    def bytes(self) -> int:
        """Payload bytes in the burst."""
        return sum(len(p) for p in self.payloads)

    @property
    def status_messages(self) -> int:
        """Messages that carry no readings: availability, LWT, ``online``, discovery.

        Every dialect retains exactly these (a Sparkplug birth carries readings and is
        not retained).
        """
        return sum(self.retain)

    @property
    def reading_messages(self) -> int:
        """Messages that carry readings (a tick, or one Shelly Gen1 value)."""
        return len(self.payloads) - self.status_messages


def render_dialect_burst(
    workload: Workload, dialect: str, *, now_us: int | None = None
) -> DialectBurst:
    """Render the whole burst in ``dialect`` (``native``: SensorGate's own events)."""
    _check(dialect)
    shaped = dialect_workload(workload, dialect)
    if dialect == "native":
        native = render_burst(shaped, now_us=now_us)
        return DialectBurst(
            dialect,
            shaped,
            native.base_us,
            native.topics,
            native.payloads,
            [False] * len(native.payloads),
            shaped.total,
        )
    base = burst_base_us(shaped, now_us)
    render = make_renderer(dialect)
    names = reading_names(shaped, dialect)
    used = min(shaped.devices, shaped.messages)
    devices = [device_id(i) for i in range(used)]
    topics: list[str] = []
    payloads: list[bytes] = []
    retain: list[bool] = []
    readings = 0
    for m in range(shaped.messages):
        device, seq = devices[m % used], m // used
        t0 = base + seq * 1_000_000
        offset = seq * 50
        batch = [
            (sensor, metric, _VALUES[(offset + j) % len(_VALUES)], "", t0 + j * 1_000)
            for j, (sensor, metric) in enumerate(names)
        ]
        for topic, payload, kept in render(SITE, device, batch):
            topics.append(topic)
            payloads.append(payload)
            retain.append(kept)
        readings += len(batch)
    dropped = int(getattr(render, "dropped", 0))
    return DialectBurst(dialect, shaped, base, topics, payloads, retain, readings - dropped)
