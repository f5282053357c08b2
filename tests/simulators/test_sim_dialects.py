"""``simulate --dialect``: the fleet's readings, rendered per family, read back by the adapters."""

from __future__ import annotations

from typing import Any

import pytest
from sim_helpers import START, small

from contract import TelemetryEvent, TopicScheme, decode
from dataflows.adapters import AdapterSet, parse_adapters
from simulators.cli import main
from simulators.dialects import DialectPublisher
from simulators.fleet import Fleet
from simulators.links import MemoryPublisher
from simulators.scenario import build_devices
from simulators.timebase import Timebase

ADAPTERS: dict[str, dict[str, Any]] = {
    "zigbee2mqtt": {"kind": "zigbee2mqtt", "site": "sim"},
    "tasmota": {"kind": "tasmota", "site": "sim"},
    "shelly": {"kind": "shelly", "site": "sim", "gen1": False},
    "sparkplug": {"kind": "sparkplug"},
    "telegraf": {"kind": "telegraf", "site_tag": "site"},
}
# Tasmota's Time has whole seconds, Telegraf nanoseconds, the others milliseconds.
TOLERANCE_US = {"tasmota": 1_000_000, "telegraf": 0}


class _Tee(MemoryPublisher):
    """Keeps the SensorGate events and passes them on to a dialect publisher."""

    def __init__(self, dialect: DialectPublisher) -> None:
        super().__init__()
        self.dialect = dialect

    def publish(self, topic: str, payload: bytes, **kw: Any) -> None:
        super().publish(topic, payload, **kw)
        self.dialect.publish(topic, payload, **kw)


def _run(dialect: str) -> tuple[list[TelemetryEvent], MemoryPublisher, DialectPublisher]:
    scenario = small(devices=3, duration_s=300.0, metrics=("temperature", "humidity", "power"))
    topics = TopicScheme()
    wire = MemoryPublisher()
    dialect_pub = DialectPublisher(wire, dialect)
    tee = _Tee(dialect_pub)
    fleet = Fleet(
        build_devices(scenario, topics, sequence_start=0),
        publisher=tee,
        topics=topics,
        timebase=Timebase(start=START, speed=None),
        interval_s=scenario.interval_s,
        duration_s=scenario.duration_s,
    )
    fleet.run()
    events = [decode(m.payload) for m in tee.messages]
    assert all(isinstance(e, TelemetryEvent) for e in events)
    return events, wire, dialect_pub  # type: ignore[return-value]


@pytest.mark.parametrize("dialect", sorted(ADAPTERS))
def test_dialect_round_trip_through_the_adapters(dialect: str):
    events, wire, publisher = _run(dialect)
    aset = AdapterSet(parse_adapters({"adapter": [{"name": dialect, **ADAPTERS[dialect]}]}))
    sent = {
        (e.data.device, r.metric, round(r.time.timestamp() * 1e6)): r.value
        for e in events
        for r in e.data.readings
    }
    got: dict[tuple[str, str], list[tuple[int, float]]] = {}
    online: set[str] = set()
    received = int(START.timestamp() * 1e6) + 600_000_000
    for msg in wire.messages:
        result = aset.adapt(msg.topic, msg.payload, received)
        assert result is not None, msg.topic
        assert result.ok, result.errors
        online |= {s.device for s in result.status if s.online}
        for tel in result.telemetry:
            assert tel.site == "sim"
            for _sensor, metric, value, _unit, t_us in tel.rows():
                got.setdefault((tel.device, metric), []).append((t_us, value))
    devices = {e.data.device for e in events}
    # availability, LWT, online flag or NBIRTH first; Telegraf has no device status
    assert online == (set() if dialect == "telegraf" else devices)
    tolerance = TOLERANCE_US.get(dialect, 1_000)
    checked = 0
    for (device, metric, t_us), value in sent.items():
        candidates = got.get((device, metric), [])
        assert any(
            abs(t - t_us) <= tolerance and v == pytest.approx(value) for t, v in candidates
        ), (
            device,
            metric,
            t_us,
        )
        checked += 1
    assert checked == sum(len(e.data.readings) for e in events) > 0
    assert publisher.dropped == 0


def test_shelly_drops_metrics_without_a_component():
    scenario_metrics = ("temperature", "pressure")
    wire = MemoryPublisher()
    publisher = DialectPublisher(wire, "shelly")
    topics = TopicScheme()
    scenario = small(devices=1, duration_s=30.0, metrics=scenario_metrics)
    Fleet(
        build_devices(scenario, topics, sequence_start=0),
        publisher=publisher,
        topics=topics,
        timebase=Timebase(start=START, speed=None),
        interval_s=scenario.interval_s,
        duration_s=scenario.duration_s,
    ).run()
    assert publisher.dropped == 3  # one pressure reading per 10 s tick


def test_cli_accepts_the_dialect_option_and_refuses_unknown_ones(
    capsys: pytest.CaptureFixture[str],
):
    with pytest.raises(SystemExit):
        main(["simulate", "--dialect", "modbus"])
    assert "invalid choice: 'modbus'" in capsys.readouterr().err
