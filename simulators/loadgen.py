"""Load generation for benchmarks: a target readings/s through the edge's MQTT link.

:func:`run_loadgen` publishes valid telemetry events (``readings_per_message``
readings each, cycling over ``metrics``) from ``devices`` device identities, paced to
``rate`` readings per second (None or 0: as fast as possible) for ``duration_s``
wall seconds (a :class:`LoadPlan` holds these), then waits for the broker's
acknowledgements and reports what was achieved. A benchmark of the gateway can call it directly.

Readings inside one message are successive samples one microsecond apart, so that
every reading has its own InfluxDB point identity; values are cheap deterministic
numbers, because a load generator should spend its time on publishing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contract import TopicScheme
from contract.errors import TopicError
from contract.ids import check_id
from edge.mqtt import MqttSettings
from simulators.links import LinkPool, Publisher
from simulators.wire import TelemetryTemplate

__all__ = ["LoadPlan", "LoadgenReport", "in_flight_window", "run_loadgen", "run_loadgen_with"]

_BURST_READINGS = 20_000  # readings published between two looks at the clock
_IN_FLIGHT_BYTES = 32_000_000  # unacknowledged payload allowed per connection
_READING_BYTES = 100  # about what one rendered reading takes


def _grace_s(duration_s: float) -> float:
    """How long after the end the generator may still publish what was due."""
    return max(0.25, 0.05 * duration_s)


def in_flight_window(readings_per_message: int) -> int:
    """Return how many messages may await their PUBACK per connection.

    Bounded in bytes, so that large messages cannot pile up gigabytes in paho's queue
    when the broker is slower than the generator.
    """
    per_message = readings_per_message * _READING_BYTES + 400
    return max(16, min(50_000, _IN_FLIGHT_BYTES // per_message))


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadPlan:
    """What to generate; checked when built.

    ``rate`` is the target in readings per second (None or 0: as fast as possible);
    ``metrics`` is a list of metric ids or a count (``m0``, ``m1``, ...).

    Devices are ``{device_prefix}-000000``, ``-000001``, ... With ``sensors`` 0 each
    reports one sensor, ``load``; with ``sensors`` N, reading ``j`` of a message comes
    from sensor ``s{j % N}`` (the shape of ``sensorgate bench``'s burst, so that a paced
    load can continue its fleet). Sequences start at ``first_sequence``, or at the wall
    clock in microseconds when it is None.
    """

    rate: float | None
    readings_per_message: int
    devices: int
    metrics: Sequence[str] | int
    duration_s: float
    qos: int
    connections: int = 1
    site: str = "load"
    device_prefix: str = "load"
    sensors: int = 0
    first_sequence: int | None = None
    drain_timeout_s: float = 30.0
    progress_every_s: float = 5.0

    def __post_init__(self) -> None:
        if self.readings_per_message < 1:
            raise ValueError("readings_per_message must be >= 1")
        if self.devices < 1:
            raise ValueError("devices must be >= 1")
        if self.sensors < 0:
            raise ValueError("sensors must be >= 0")
        if self.first_sequence is not None and self.first_sequence < 0:
            raise ValueError("first_sequence must be >= 0")
        try:  # refused here, before connecting, not by the first message
            check_id("site", self.site)
            check_id("device", f"{self.device_prefix}-000000")
        except TopicError as exc:
            raise ValueError(f"{exc} (--site, --device-prefix)") from exc
        if self.duration_s <= 0:
            raise ValueError("duration_s must be > 0")
        if not self.metric_names:
            raise ValueError("at least one metric is needed")

    @property
    def metric_names(self) -> list[str]:
        """The metric ids, ``m0``, ``m1``, ... for a count."""
        metrics = self.metrics
        return [f"m{i}" for i in range(metrics)] if isinstance(metrics, int) else list(metrics)


@dataclass
class LoadgenReport:
    """What a load generation run achieved."""

    target_readings_per_s: float | None
    readings_per_message: int
    devices: int
    metrics: int
    qos: int
    connections: int
    duration_s: float
    wall_s: float = 0.0
    """Seconds spent publishing."""
    messages: int = 0
    readings: int = 0
    bytes: int = 0
    acknowledged: int = 0
    """Messages the broker acknowledged (PUBACKs for QoS 1; sent, for QoS 0)."""
    ack_wait_s: float = 0.0
    """Seconds waited after publishing for the last acknowledgements."""
    all_acknowledged: bool = False
    max_backlog_s: float = 0.0
    """The furthest the publisher fell behind its schedule, in seconds."""

    @property
    def readings_per_s(self) -> float:
        """Achieved publish rate in readings per second."""
        return self.readings / self.wall_s if self.wall_s else 0.0

    @property
    def messages_per_s(self) -> float:
        """Achieved publish rate in messages per second."""
        return self.messages / self.wall_s if self.wall_s else 0.0

    @property
    def acked_readings_per_s(self) -> float:
        """Acknowledged readings per second, over publishing plus the wait for acks."""
        total = self.wall_s + self.ack_wait_s
        return self.acknowledged * self.readings_per_message / total if total else 0.0

    @property
    def kept_up(self) -> bool:
        """Whether the target was met: 98 % of the messages due, on time (unthrottled: yes)."""
        if not self.target_readings_per_s:
            return True
        owed = int(self.duration_s * self.target_readings_per_s / self.readings_per_message)
        on_time = self.wall_s <= self.duration_s + _grace_s(self.duration_s)
        return self.messages >= 0.98 * owed and on_time

    def as_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {
            "target_readings_per_s": self.target_readings_per_s,
            "readings_per_message": self.readings_per_message,
            "devices": self.devices,
            "metrics": self.metrics,
            "qos": self.qos,
            "connections": self.connections,
            "duration_s": self.duration_s,
            "wall_s": round(self.wall_s, 3),
            "messages": self.messages,
            "readings": self.readings,
            "bytes": self.bytes,
            "acknowledged": self.acknowledged,
            "all_acknowledged": self.all_acknowledged,
            "ack_wait_s": round(self.ack_wait_s, 3),
            "readings_per_s": round(self.readings_per_s, 1),
            "messages_per_s": round(self.messages_per_s, 1),
            "acked_readings_per_s": round(self.acked_readings_per_s, 1),
            "max_backlog_s": round(self.max_backlog_s, 3),
            "kept_up": self.kept_up,
        }


class _TimeText:
    """Formats epoch microseconds as ISO 8601 UTC, caching the part up to the second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def prefix(self, second: int) -> str:
        """Return ``YYYY-MM-DDTHH:MM:SS`` of Unix second ``second``."""
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return self._prefix

    def __call__(self, micros: int) -> str:
        second, frac = divmod(micros, 1_000_000)
        return f"{self.prefix(second)}.{frac:06d}Z"


def _reading_head(plan: LoadPlan, metric: str, j: int) -> str:
    """Return the JSON of reading ``j`` of a message up to its value."""
    sensor = f"s{j % plan.sensors}" if plan.sensors else "load"
    template = TelemetryTemplate(site=plan.site, device="x", sensor=sensor, units={metric: ""})
    return template.reading_head(metric)


class _Messages:
    """Renders and publishes the generator's messages, round robin over the devices.

    Readings are rendered in bulk from pre-rendered pieces: at hundreds of thousands of
    readings per second, building tuples and formatting floats per reading is what
    would limit the generator, not the broker.
    """

    def __init__(self, topics: TopicScheme, plan: LoadPlan) -> None:
        names = plan.metric_names
        device_ids = [f"{plan.device_prefix}-{i:06d}" for i in range(plan.devices)]
        units = dict.fromkeys(names, "")
        self.templates = [
            TelemetryTemplate(site=plan.site, device=d, sensor="load", units=units)
            for d in device_ids
        ]
        self.topics = [topics.telemetry(plan.site, d) for d in device_ids]
        # By default sequences start at the wall clock in microseconds, as the fleet's do:
        # a rerun against the same gateway is not taken for duplicates.
        first = time.time_ns() // 1000 if plan.first_sequence is None else plan.first_sequence
        self.sequences = [first] * plan.devices
        self.shape = [
            (_reading_head(plan, names[j % len(names)], j), j)
            for j in range(plan.readings_per_message)
        ]
        self.values = [repr(float(v)) for v in range(1000)]
        self.time_text = _TimeText()
        self.device = 0

    def publish(self, publisher: Publisher, count: int, qos: int) -> int:
        """Publish ``count`` messages stamped now; return their payload bytes."""
        # Locals, not attributes, in the publishing loop below.
        shape, values, time_text = self.shape, self.values, self.time_text
        templates, topics, sequences = self.templates, self.topics, self.sequences
        devices, device, sent_bytes = len(templates), self.device, 0
        wall_us = time.time_ns() // 1000
        last = len(shape) - 1
        us0 = wall_us - last  # the first reading's time; the last one's is wall_us
        second, frac0 = divmod(us0, 1_000_000)
        prefix = time_text.prefix(second)
        same_second = frac0 + last < 1_000_000
        message_time = time_text(wall_us)
        for _ in range(count):
            seq = sequences[device]
            if same_second:
                body = ",".join(
                    [
                        f'{head}{values[(seq + j) % 1000]},"time":"{prefix}.{frac0 + j:06d}Z"}}'
                        for head, j in shape
                    ]
                )
            else:
                body = ",".join(
                    [
                        f'{head}{values[(seq + j) % 1000]},"time":"{time_text(us0 + j)}"}}'
                        for head, j in shape
                    ]
                )
            payload = templates[device].render_fragments(seq, message_time, body)
            publisher.publish(topics[device], payload, qos=qos, key=device)
            sequences[device] = seq + 1
            sent_bytes += len(payload)
            device = device + 1 if device + 1 < devices else 0
        self.device = device
        return sent_bytes


class _Pacer:
    """Says how many messages are due, on the plan's schedule (or as fast as possible)."""

    def __init__(self, plan: LoadPlan, report: LoadgenReport) -> None:
        self.duration_s = plan.duration_s
        rate = plan.rate if plan.rate else None
        self.msg_rate = rate / plan.readings_per_message if rate else None
        self.burst = max(1, _BURST_READINGS // plan.readings_per_message)
        self.report = report
        self.t0 = self.now = time.monotonic()
        self.end = self.t0 + plan.duration_s

    def due(self, sent: int) -> int | None:
        """Return the messages due by now (at most a burst ahead), None when the run is over.

        Sleeps while none is due. The furthest behind schedule goes to the report.
        """
        t0, end, msg_rate, report = self.t0, self.end, self.msg_rate, self.report
        while True:
            now = self.now = time.monotonic()
            if now >= end:
                if msg_rate is None:
                    return None
                # What fell due before the end is still owed, so that a late wake-up does
                # not read as a shortfall; a real backlog (more than the grace) ends the run.
                due_total = int(self.duration_s * msg_rate)
                owed_s = (due_total - sent) / msg_rate
                report.max_backlog_s = max(report.max_backlog_s, owed_s)
                if owed_s <= 0 or now - end > _grace_s(self.duration_s):
                    return None
                return min(due_total, sent + self.burst)
            if msg_rate is None:
                return sent + self.burst
            due = int((now - t0) * msg_rate)
            backlog = (due - sent) / msg_rate
            if backlog > report.max_backlog_s:
                report.max_backlog_s = backlog
            if due > sent:
                return min(due, sent + self.burst)
            time.sleep(max(0.0, min((sent + 1) / msg_rate - (now - t0), end - now, 0.05)))


def run_loadgen_with(
    publisher: Publisher,
    topics: TopicScheme,
    plan: LoadPlan,
    *,
    progress: Callable[[LoadgenReport], None] | None = None,
) -> LoadgenReport:
    """Run the load generator over an already connected ``publisher``."""
    readings_per_message = plan.readings_per_message
    report = LoadgenReport(
        target_readings_per_s=plan.rate if plan.rate else None,
        readings_per_message=readings_per_message,
        devices=plan.devices,
        metrics=len(plan.metric_names),
        qos=plan.qos,
        connections=plan.connections,
        duration_s=plan.duration_s,
    )
    messages = _Messages(topics, plan)
    pacer = _Pacer(plan, report)
    t0 = pacer.t0
    next_progress = t0 + plan.progress_every_s
    sent = 0
    while (due := pacer.due(sent)) is not None:
        report.bytes += messages.publish(publisher, due - sent, plan.qos)
        sent = report.messages = due
        if progress is not None and pacer.now >= next_progress:
            next_progress = pacer.now + plan.progress_every_s
            report.wall_s = pacer.now - t0
            report.readings = sent * readings_per_message
            report.acknowledged = publisher.acknowledged
            progress(report)
    report.wall_s = time.monotonic() - t0
    report.messages = sent
    report.readings = sent * readings_per_message
    drain_start = time.monotonic()
    report.all_acknowledged = publisher.wait_acknowledged(plan.drain_timeout_s)
    report.ack_wait_s = time.monotonic() - drain_start
    report.acknowledged = publisher.acknowledged
    return report


def run_loadgen(
    mqtt: MqttSettings,
    topics: TopicScheme,
    plan: LoadPlan,
    *,
    progress: Callable[[LoadgenReport], None] | None = None,
) -> LoadgenReport:
    """Connect ``plan.connections`` edge MQTT links, generate the load, disconnect, report."""
    pool = LinkPool(
        mqtt,
        size=plan.connections,
        client_prefix=f"sg-loadgen-{time.time_ns():x}",
        max_in_flight=in_flight_window(plan.readings_per_message),
    )
    pool.start()
    try:
        return run_loadgen_with(pool, topics, plan, progress=progress)
    finally:
        pool.stop()
