"""The small simulated fleet that ``sensorgate up`` runs: the ``demo`` scenario.

The scenario (``simulators/scenarios/demo.toml``: rooms with temperature and
humidity, four readings a second) runs in real time in a background thread,
publishing through the edge's MQTT link; ``devices``, ``interval_s``, ``seed`` and
``site`` override the file.

So that a fresh ``sensorgate up`` shows an alarm at once, the scenario makes the
temperature of the first device (:data:`DEMO_ANOMALY_DEVICE`) jump by 8 °C for 30 s
at 40 s after the start and again every 4 minutes; the default anomaly detector has
learnt the series by then (100 readings) and raises an explained alarm each time (the
raise rate limit folds the seventh and later ones within an hour into the sixth).
:data:`DEMO_RULES` are the rules ``sensorgate up`` runs when none are configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contract import TopicScheme
from edge.mqtt import MqttSettings
from simulators.fleet import Fleet
from simulators.labels import MemoryLabelSink
from simulators.links import LinkPool
from simulators.scenario import (
    SCENARIO_DIR,
    DeviceGroup,
    Scenario,
    Site,
    build_devices,
    load_scenario,
)
from simulators.timebase import Timebase, resolve_start

__all__ = ["DEMO_ANOMALY_DEVICE", "DemoFleet", "demo_scenario", "start_demo_fleet"]

DEMO_ANOMALY_DEVICE = "demo-000"
"""The device whose temperature the demo makes jump (``demo.toml``)."""

DEMO_RULES = Path(__file__).with_name("demo_rules.toml")
"""The demo's alarm rules: the defaults, anomaly alarms cleared after 30 s off."""


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


def demo_scenario(
    *, site: str = "demo", devices: int = 5, interval_s: float | None = None, seed: int = 0
) -> Scenario:
    """Return the demo scenario with its site, device count, interval and seed set."""
    base = load_scenario(SCENARIO_DIR / "demo.toml")
    group = base.sites[0].devices[0]
    return base.override(
        seed=seed,
        interval_s=interval_s,
        sites=[
            Site(id=site, devices=(DeviceGroup(type=group.type, count=devices, name=group.name),))
        ],
    )


def start_demo_fleet(
    mqtt: MqttSettings,
    topics: TopicScheme,
    *,
    site: str = "demo",
    devices: int = 5,
    interval_s: float | None = None,
    seed: int = 0,
) -> DemoFleet:
    """Connect and start publishing the demo scenario in a background thread.

    ``interval_s`` None keeps the scenario's (0.25 s).
    """
    scenario = demo_scenario(site=site, devices=devices, interval_s=interval_s, seed=seed)
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
