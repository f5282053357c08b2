"""Helpers shared by the simulator tests: run a fleet in memory and collect what it sent."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from contract import TelemetryEvent, TopicScheme, decode
from simulators.fleet import Fleet, FleetReport
from simulators.labels import Label, MemoryLabelSink
from simulators.links import MemoryPublisher
from simulators.scenario import Scenario, build_devices, simple_scenario
from simulators.timebase import Timebase

START = datetime(2026, 3, 2, tzinfo=UTC)


def run_memory(scenario: Scenario) -> tuple[list[TelemetryEvent], list[Label], FleetReport]:
    """Run ``scenario`` as fast as possible into memory; return decoded events and labels."""
    topics = TopicScheme()
    devices = build_devices(scenario, topics, sequence_start=0)
    publisher = MemoryPublisher()
    labels = MemoryLabelSink()
    fleet = Fleet(
        devices,
        publisher=publisher,
        topics=topics,
        timebase=Timebase(start=scenario.start or START, speed=None),
        interval_s=scenario.interval_s,
        duration_s=scenario.duration_s,
        label_sinks=[labels],
    )
    report = fleet.run()
    events = []
    for msg in publisher.messages:
        event = decode(msg.payload)
        assert isinstance(event, TelemetryEvent)
        assert msg.topic == topics.telemetry(event.data.site, event.data.device)
        events.append(event)
    return events, labels.labels, report


def by_device_metric(events: list[TelemetryEvent]) -> dict[tuple[str, str], list[tuple[datetime, float]]]:
    """Readings as ``(device, metric) -> [(time, value)]`` in publishing order."""
    out: dict[tuple[str, str], list[tuple[datetime, float]]] = defaultdict(list)
    for event in events:
        for r in event.data.readings:
            assert r.value is not None
            out[(event.data.device, r.metric)].append((r.time, r.value))
    return out


def small(**kw: object) -> Scenario:
    """A small fast scenario with overridable options."""
    options: dict[str, object] = {
        "devices": 3,
        "metrics": ("temperature", "humidity", "pressure"),
        "interval_s": 10.0,
        "duration_s": 3600.0,
        "speed": "max",
        "start": START,
        "seed": 5,
    }
    options.update(kw)
    return simple_scenario(**options)  # type: ignore[arg-type]
