"""Helpers for tests of the shard step: build raw messages, read its columnar output."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from contract import Reading, TelemetryEvent, TopicScheme, encode
from dataflows.batch import MessageBatch
from dataflows.columns import PointColumns
from dataflows.config import StreamConfig
from dataflows.eventclock import Clock, FleetClock, to_us
from dataflows.observer import Observer
from dataflows.rules import RuleSet, StaticRules, parse_rules
from dataflows.shard import ShardProcessor
from dataflows.shard_output import ShardOutput
from dataflows.summaries import ActiveAlarms
from dataflows.windows import Aggregate, aggregates_of

SCHEME = TopicScheme()
NO_RULES = parse_rules({})


def telemetry(
    seq: int,
    at: datetime,
    value: float | None = 1.0,
    *,
    site: str = "s",
    device: str = "d",
    sensor: str = "env",
    metric: str = "temp",
    fault: str | None = None,
    outbox: str | None = None,
) -> tuple[str, bytes]:
    """One telemetry event with one reading, as (topic, payload)."""
    reading = Reading(sensor=sensor, metric=metric, value=value, time=at, fault=fault)
    event = TelemetryEvent.create(
        site=site, device=device, sequence=seq, readings=[reading], outbox=outbox
    )
    return SCHEME.telemetry(site, device), encode(event)


def batch(messages: Iterable[tuple[str, bytes]], received_us: int) -> MessageBatch:
    """A batch of raw messages that all arrived at ``received_us``."""
    out = MessageBatch()
    for topic, payload in messages:
        out.append(topic, payload, received_us)
    return out


def processor(
    clock: Clock,
    *,
    lateness_s: float = 5,
    windows: Sequence[str] = ("10s",),
    rules: RuleSet | None = None,
    observer: Observer | None = None,
    fleet: FleetClock | None = None,
    state: dict[str, Any] | None = None,
) -> ShardProcessor:
    """A shard with one window spec and no rules unless given."""
    return ShardProcessor(
        topics=SCHEME,
        config=StreamConfig.from_strings(windows, lateness_s),
        rules=StaticRules(rules or NO_RULES),
        clock=clock,
        fleet=fleet,
        observer=observer,
        state=state,
    )


def send(proc: ShardProcessor, messages: Iterable[tuple[str, bytes]]) -> ShardOutput:
    """Process messages that arrive now (the processor's clock)."""
    return proc.process([batch(messages, proc.clock.now_us())])


def aggregates(out: ShardOutput) -> list[Aggregate]:
    """Closed windows in an output, as objects."""
    found: list[Aggregate] = []
    for points in out.points:
        assert isinstance(points, PointColumns)
        if points.aggregates is not None:
            found.extend(aggregates_of(points.aggregates, points.names))
    return found


def readings(out: ShardOutput) -> list[tuple[str, str, int, float]]:
    """Stored raw readings as (device, metric, time µs, value)."""
    rows = []
    for points in out.points:
        assert isinstance(points, PointColumns)
        r = points.readings
        if r is None:
            continue
        names = points.names
        for s, t, v in zip(r.series.tolist(), r.t_us.tolist(), r.value.tolist(), strict=True):
            rows.append((names.device[s], names.metric[s], t, v))
    return rows


def late(out: ShardOutput) -> list[tuple[int, float]]:
    """Late readings as (time µs, value)."""
    rows = []
    for points in out.points:
        assert isinstance(points, PointColumns)
        if points.late is not None:
            rows.extend(zip(points.late.t_us.tolist(), points.late.value.tolist(), strict=True))
    return rows


def alarm_events(out: ShardOutput) -> list[Any]:
    """Alarm events (not the active summaries) in an output."""
    return [a for a in out.alarms if not isinstance(a, ActiveAlarms)]


__all__ = [
    "NO_RULES",
    "SCHEME",
    "aggregates",
    "alarm_events",
    "batch",
    "late",
    "processor",
    "readings",
    "send",
    "telemetry",
    "to_us",
]
