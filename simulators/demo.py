"""The small simulated fleet that ``sensorgate up`` runs.

A few devices, each with a temperature and a humidity sensor, publishing one
telemetry event per device per interval through the edge's MQTT link.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field

from contract import Reading, TelemetryEvent, TopicScheme, encode, utc_now
from edge.mqtt import MqttLink, MqttSettings

__all__ = ["DemoFleet", "start_demo_fleet"]


@dataclass
class DemoFleet:
    """A running demo fleet; :meth:`stop` ends it."""

    link: MqttLink
    thread: threading.Thread
    stop_event: threading.Event
    published_events: int = 0
    published_readings: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def stop(self) -> None:
        """Stop publishing and disconnect."""
        self.stop_event.set()
        self.thread.join(timeout=5)
        self.link.stop()


def start_demo_fleet(
    mqtt: MqttSettings,
    topics: TopicScheme,
    *,
    site: str = "demo",
    devices: int = 5,
    interval_s: float = 1.0,
    seed: int = 0,
) -> DemoFleet:
    """Connect and start publishing for ``devices`` simulated devices in a thread."""
    link = MqttLink(mqtt.model_copy(update={"client_id": f"sg-demo-fleet-{seed}"}))
    link.start()
    stop = threading.Event()
    fleet = DemoFleet(link=link, thread=threading.Thread(), stop_event=stop)
    rng = random.Random(seed)
    names = [f"demo-{i:03d}" for i in range(devices)]
    offsets = {name: rng.uniform(-2, 2) for name in names}

    def run() -> None:
        sequence = 0
        while not stop.is_set():
            now = utc_now()
            phase = now.timestamp() / 600 * 2 * math.pi
            for name in names:
                temp = 21 + offsets[name] + 3 * math.sin(phase) + rng.gauss(0, 0.2)
                hum = 45 - 4 * math.sin(phase) + rng.gauss(0, 0.5)
                event = TelemetryEvent.create(
                    site=site,
                    device=name,
                    sequence=sequence,
                    readings=[
                        Reading(
                            sensor="env",
                            metric="temperature",
                            value=round(temp, 3),
                            unit="degC",
                            time=now,
                        ),
                        Reading(
                            sensor="env", metric="humidity", value=round(hum, 3), unit="%", time=now
                        ),
                    ],
                )
                link.publish(topics.telemetry(site, name), encode(event))
                fleet.published_events += 1
                fleet.published_readings += len(event.data.readings)
            sequence += 1
            stop.wait(interval_s)

    fleet.thread = threading.Thread(target=run, name="demo-fleet", daemon=True)
    fleet.thread.start()
    return fleet
