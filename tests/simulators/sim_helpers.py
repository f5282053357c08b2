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


def by_device_metric(
    events: list[TelemetryEvent],
) -> dict[tuple[str, str], list[tuple[datetime, float]]]:
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


class Collector:
    """Subscribes to a topic filter through the edge's MQTT link and keeps what arrives."""

    def __init__(self, services: object, topic_filter: str, client_id: str) -> None:
        import threading

        from edge.mqtt import MqttLink, MqttSettings

        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        settings = MqttSettings(
            host=services.mqtt_host,  # type: ignore[attr-defined]
            port=services.mqtt_port,  # type: ignore[attr-defined]
            client_id=client_id,
            clean_session=True,
        )

        def on_connect(link: MqttLink) -> None:
            link.subscribe(topic_filter, qos=1)

        self.link = MqttLink(settings, on_connect=on_connect, on_message=self._keep)
        self.link.client.on_subscribe = lambda *_a: self._subscribed.set()

    def _keep(self, msg: object) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))  # type: ignore[attr-defined]

    def __enter__(self) -> Collector:
        self.link.start()
        assert self._subscribed.wait(10), "no SUBACK from the broker"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.link.stop()

    def count(self) -> int:
        with self._lock:
            return len(self.messages)


def mqtt_settings(services: object, client_id: str = "") -> object:
    from edge.mqtt import MqttSettings

    return MqttSettings(
        host=services.mqtt_host,  # type: ignore[attr-defined]
        port=services.mqtt_port,  # type: ignore[attr-defined]
        client_id=client_id,
    )
