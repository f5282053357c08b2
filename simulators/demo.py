"""The small simulated fleet that ``sensorgate up`` runs: the ``demo`` scenario.

The scenario (``simulators/scenarios/demo.toml``: rooms with temperature and
humidity, and an occasional anomaly) runs in real time in a background thread,
publishing through the edge's MQTT link; ``devices``, ``interval_s``, ``seed`` and
``site`` override the file.
"""

from __future__ import annotations

from dataclasses import dataclass

from contract import TopicScheme
from edge.mqtt import MqttSettings
from simulators.fleet import Fleet
from simulators.labels import MemoryLabelSink
from simulators.links import LinkPool
from simulators.scenario import SCENARIO_DIR, DeviceGroup, Site, build_devices, load_scenario
from simulators.timebase import Timebase, resolve_start

__all__ = ["DemoFleet", "start_demo_fleet"]


@dataclass
class DemoFleet:
    """A running demo fleet; :meth:`stop` ends it."""

    fleet: Fleet
    pool: LinkPool
    labels: MemoryLabelSink

    @property
    def published_events(self) -> int:
        """Telemetry events published so far."""
        return self.fleet.report.events

    @property
    def published_readings(self) -> int:
        """Readings published so far."""
        return self.fleet.report.readings

    def stop(self) -> None:
        """Stop publishing and disconnect."""
        self.fleet.stop()
        self.pool.stop()


def start_demo_fleet(
    mqtt: MqttSettings,
    topics: TopicScheme,
    *,
    site: str = "demo",
    devices: int = 5,
    interval_s: float = 1.0,
    seed: int = 0,
) -> DemoFleet:
    """Connect and start publishing the demo scenario in a background thread."""
    base = load_scenario(SCENARIO_DIR / "demo.toml")
    group = base.sites[0].devices[0]
    scenario = base.override(
        seed=seed,
        interval_s=interval_s,
        sites=[
            Site(id=site, devices=(DeviceGroup(type=group.type, count=devices, name=group.name),))
        ],
    )
    pool = LinkPool(mqtt, size=1, client_prefix=f"sg-demo-fleet-{seed}")
    pool.start()
    labels = MemoryLabelSink()
    fleet = Fleet(
        build_devices(scenario, topics),
        publisher=pool,
        topics=topics,
        timebase=Timebase(start=resolve_start(None, 1.0, None), speed=1.0),
        interval_s=scenario.interval_s,
        duration_s=None,
        label_sinks=[labels],
    )
    fleet.start()
    return DemoFleet(fleet=fleet, pool=pool, labels=labels)
