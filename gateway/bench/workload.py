"""The fixed workload of ``sensorgate bench``: one burst of telemetry events.

Shape (the ``peer`` scenario by default): ``devices`` devices, each with
``sensors_per_device`` sensors ``s0, s1, ...``. Reading ``j`` of a message comes from sensor
``s{j % sensors_per_device}`` and reports metric ``m{j % 10}``. The readings of a message
are 1 ms apart; a device's successive messages are 1 s apart in event time. Messages go
round-robin over the devices (message ``m`` belongs to device ``m % devices`` and carries
its sequence ``m // devices``), so event time advances evenly across the fleet, as it
would with real devices reporting once a second. The whole burst lies in the recent past
(nothing is in the future, however long the peers take).

Every message is a valid ``io.sensorgate.telemetry.reported.v1`` CloudEvent with a unique
id and a per-device sequence ``0, 1, 2, ...``, on ``{prefix}/{site}/{device}/telemetry``.
Payloads are rendered from pre-escaped pieces (:class:`simulators.wire.TelemetryTemplate`)
before the clock starts; :mod:`gateway.bench.publisher` publishes them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from contract import TopicScheme
from contract.errors import ConfigError
from simulators.wire import TelemetryTemplate

__all__ = [
    "DEVICE_PREFIX",
    "METRICS",
    "SCENARIOS",
    "SITE",
    "Burst",
    "Scenario",
    "Workload",
    "burst_base_us",
    "device_id",
    "iter_readings",
    "reading_time_us",
    "render_burst",
    "value_text",
    "with_overrides",
]

METRICS = 10
"""Metric names cycle over ``m0 .. m9``."""
SITE = "bench"
DEVICE_PREFIX = "dev"
"""Device ``i`` is ``dev-{i:06d}``."""
_SLACK_S = 5  # the last reading lies this far before the moment the burst is rendered
_VALUES = [repr(round(20.0 + 5.0 * math.sin(i / 7.0), 3)) for i in range(997)]


@dataclass(frozen=True, slots=True)
class Workload:
    """How many devices, readings and sensors the burst has."""

    devices: int = 1_000
    readings_per_message: int = 50
    total: int = 1_000_000
    """Readings in the whole burst."""
    sensors_per_device: int = 50
    qos: int = 1
    topic_prefix: str = "sg/v1"

    def __post_init__(self) -> None:
        for name in ("devices", "readings_per_message", "total", "sensors_per_device"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be at least 1; got {getattr(self, name)}")
        if self.total % self.readings_per_message:
            raise ConfigError(
                "total",
                f"must be a multiple of readings_per_message ({self.readings_per_message});"
                f" got {self.total:,}",
            )
        if self.readings_per_message > 1_000:
            # 1 ms apart: more than 1,000 readings would overlap the device's next message.
            raise ConfigError(
                "readings_per_message",
                f"at most 1,000 (1 ms apart within 1 s); got {self.readings_per_message}",
            )
        if self.qos not in (0, 1):
            raise ConfigError("qos", f"must be 0 or 1; got {self.qos}")
        TopicScheme(self.topic_prefix)  # refuses a bad prefix with a TopicError

    @property
    def messages(self) -> int:
        """Messages in the burst."""
        return self.total // self.readings_per_message

    @property
    def messages_per_device(self) -> int:
        """Messages of the busiest device (the last round over the fleet may be partial)."""
        return -(-self.messages // self.devices)

    @property
    def publishing_devices(self) -> int:
        """Devices that send at least one message (fewer than ``devices`` in a short burst)."""
        return min(self.devices, self.messages)

    @property
    def series_per_device(self) -> int:
        """Distinct (sensor, metric) pairs a device reports."""
        rpm, sensors = self.readings_per_message, self.sensors_per_device
        return len({(j % sensors, j % METRICS) for j in range(rpm)})

    @property
    def series(self) -> int:
        """Distinct series in the burst (only devices that send at least one message)."""
        return self.publishing_devices * self.series_per_device

    def as_dict(self) -> dict[str, Any]:
        """Return the shape and its derived counts, JSON-ready."""
        return {
            **asdict(self),
            "messages": self.messages,
            "messages_per_device": self.messages_per_device,
            "series": self.series,
            "metrics": METRICS,
        }


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named workload."""

    name: str
    workload: Workload
    description: str


SCENARIOS = {
    "peer": Scenario(
        "peer",
        Workload(),
        "1,000 devices x 50 sensors, 50 readings per QoS 1 message, 1 M readings",
    ),
    "series100k": Scenario(
        "series100k",
        Workload(devices=10_000, sensors_per_device=10),
        "10,000 devices x 10 series (100,000 series), 50 readings per message"
        " (5 instants x 10 series), 1 M readings",
    ),
    "burst5m": Scenario(
        "burst5m",
        Workload(total=5_000_000),
        "the peer workload with 5 M readings: stored must equal expected",
    ),
}


def with_overrides(workload: Workload, **overrides: int | None) -> Workload:
    """Return ``workload`` with the knobs that are not None replaced."""
    changes: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    return replace(workload, **changes)


def device_id(index: int) -> str:
    """Return the id of device ``index``."""
    return f"{DEVICE_PREFIX}-{index:06d}"


def burst_base_us(workload: Workload, now_us: int | None = None) -> int:
    """Return the event time (epoch µs) of every device's first message.

    Far enough in the past that the last reading is ``_SLACK_S`` seconds before ``now_us``.
    """
    now = time.time_ns() // 1_000 if now_us is None else now_us
    span_us = (workload.messages_per_device - 1) * 1_000_000 + (
        workload.readings_per_message - 1
    ) * 1_000
    return now - span_us - _SLACK_S * 1_000_000


def reading_time_us(base_us: int, sequence: int, index: int) -> int:
    """Return the event time of reading ``index`` of a device's message ``sequence``."""
    return base_us + sequence * 1_000_000 + index * 1_000


def value_text(sequence: int, index: int) -> str:
    """Return the value of a reading as JSON/line-protocol text (cheap, deterministic)."""
    return _VALUES[(sequence * 50 + index) % len(_VALUES)]


class _TimeText:
    """Formats epoch µs as the contract does (``...T12:00:00.123456Z``), caching seconds."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, micros: int) -> str:
        second, frac = divmod(micros, 1_000_000)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{frac:06d}Z"


@dataclass(frozen=True, slots=True)
class Burst:
    """Rendered messages, in publishing order."""

    workload: Workload
    base_us: int
    topics: list[str]
    payloads: list[bytes]

    @property
    def bytes(self) -> int:
        """Payload bytes in the burst."""
        return sum(len(p) for p in self.payloads)


def render_burst(workload: Workload, *, now_us: int | None = None) -> Burst:
    """Render every message of the burst (topics and CloudEvents JSON payloads)."""
    base = burst_base_us(workload, now_us)
    scheme = TopicScheme(workload.topic_prefix)
    rpm, sensors = workload.readings_per_message, workload.sensors_per_device
    used = workload.publishing_devices
    devices = [device_id(i) for i in range(used)]
    templates = [
        TelemetryTemplate(site=SITE, device=d, sensor="s0", units={"m0": ""}) for d in devices
    ]
    device_topics = [scheme.telemetry(SITE, d) for d in devices]
    heads = []
    for j in range(rpm):
        sensor, metric = f"s{j % sensors}", f"m{j % METRICS}"
        head = TelemetryTemplate(site=SITE, device="x", sensor=sensor, units={metric: ""})
        heads.append(head.reading_head(metric))
    fmt = _TimeText()
    topics: list[str] = []
    payloads: list[bytes] = []
    for m in range(workload.messages):
        device, seq = m % used, m // used
        t0 = base + seq * 1_000_000
        body = ",".join(
            [f'{heads[j]}{value_text(seq, j)},"time":"{fmt(t0 + j * 1_000)}"}}' for j in range(rpm)]
        )
        payloads.append(templates[device].render_fragments(seq, fmt(t0 + (rpm - 1) * 1_000), body))
        topics.append(device_topics[device])
    return Burst(workload, base, topics, payloads)


def iter_readings(workload: Workload, base_us: int) -> Iterator[tuple[str, str, str, str, int]]:
    """Yield ``(device, sensor, metric, value_text, time_us)`` for every reading, in order.

    The same readings :func:`render_burst` puts in its messages (the influxd ceiling
    writes them as raw points).
    """
    rpm, sensors = workload.readings_per_message, workload.sensors_per_device
    used = workload.publishing_devices
    names = [(f"s{j % sensors}", f"m{j % METRICS}") for j in range(rpm)]
    for m in range(workload.messages):
        device, seq = device_id(m % used), m // used
        t0 = base_us + seq * 1_000_000
        for j, (sensor, metric) in enumerate(names):
            yield device, sensor, metric, value_text(seq, j), t0 + j * 1_000
