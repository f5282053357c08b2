"""``simulate --dialect``: the fleet's readings, rendered per family, read back by the adapters."""

from __future__ import annotations

import json
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
    "shelly1": {"kind": "shelly", "site": "sim", "gen2_prefixes": []},
    "homeassistant": {"kind": "homeassistant", "site": "sim", "state_filters": ["sim-ha/+/+"]},
    "sparkplug": {"kind": "sparkplug"},
    "telegraf": {"kind": "telegraf", "site_tag": "site"},
}
# Tasmota's Time has whole seconds, Telegraf nanoseconds, the others milliseconds;
# Shelly Gen1 values and Home Assistant states carry no time (arrival time: not compared).
TOLERANCE_US: dict[str, int | None] = {
    "tasmota": 1_000_000,
    "telegraf": 0,
    "shelly1": None,
    "homeassistant": None,
}


class _Tee(MemoryPublisher):
    """Keeps the SensorGate events and passes them on to a dialect publisher."""

    def __init__(self, dialect: DialectPublisher) -> None:
        super().__init__()
        self.dialect = dialect

    def publish(self, topic: str, payload: bytes, **kw: Any) -> None:
        super().publish(topic, payload, **kw)
        self.dialect.publish(topic, payload, **kw)


def _run(
    dialect: str,
    *,
    devices: int = 3,
    duration_s: float = 300.0,
    metrics: tuple[str, ...] = ("temperature", "humidity", "power"),
) -> tuple[list[TelemetryEvent], MemoryPublisher, DialectPublisher]:
    scenario = small(devices=devices, duration_s=duration_s, metrics=metrics)
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
    if tolerance is None:
        # No time in the dialect: the same values per series, in publishing order.
        expected: dict[tuple[str, str], list[float]] = {}
        for (device, metric, _t), value in sorted(sent.items(), key=lambda kv: kv[0][2]):
            expected.setdefault((device, metric), []).append(value)
        assert set(got) == set(expected)
        for key, values in expected.items():
            assert [v for _t, v in got[key]] == pytest.approx(values), key
            checked += len(values)
    for (device, metric, t_us), value in sent.items() if tolerance is not None else ():
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
    _events, _wire, publisher = _run(
        "shelly", devices=1, duration_s=30.0, metrics=("temperature", "pressure")
    )
    assert publisher.dropped == 3  # one pressure reading per 10 s tick


def _event(device: str, *readings: tuple[str, float, str]) -> bytes:
    """A SensorGate telemetry event's data, as much of it as the dialect renderers read."""
    rows = [
        {"sensor": "x", "metric": m, "value": v, "unit": u, "time": "2026-11-30T10:00:00Z"}
        for m, v, u in readings
    ]
    return json.dumps({"data": {"site": "s", "device": device, "readings": rows}}).encode()


def test_shelly1_publishes_one_plain_number_per_value_topic_after_online():
    wire = MemoryPublisher()
    publisher = DialectPublisher(wire, "shelly1")
    raw = _event("d1", ("power", 12.5, "W"), ("energy", 2.0, "Wh"), ("pressure", 1013.0, "hPa"))
    publisher.publish("ignored", raw)
    publisher.publish("ignored", raw)
    assert [(m.topic, m.payload, m.retain) for m in wire.messages[:3]] == [
        ("shellies/d1/online", b"true", True),
        ("shellies/d1/relay/0/power", b"12.5", False),
        ("shellies/d1/relay/0/energy", b"120", False),  # Watt-minutes
    ]
    assert len(wire.messages) == 5  # online once; no Gen1 topic for pressure
    assert publisher.dropped == 2


def test_homeassistant_sends_retained_configs_once_then_states():
    wire = MemoryPublisher()
    publisher = DialectPublisher(wire, "homeassistant")
    raw = _event("d1", ("temperature", 21.5, "°C"), ("m0", 3.0, ""))
    publisher.publish("ignored", raw)
    publisher.publish("ignored", raw)
    topics = [(m.topic, m.retain) for m in wire.messages]
    assert topics == [
        ("homeassistant/sensor/d1/temperature/config", True),
        ("homeassistant/sensor/d1/m0/config", True),
        ("sim-ha/d1/availability", True),
        ("sim-ha/d1/state", False),
        ("sim-ha/d1/state", False),
    ]
    temperature = json.loads(wire.messages[0].payload)
    assert temperature["stat_t"] == "sim-ha/d1/state"
    assert temperature["val_tpl"] == "{{ value_json.temperature }}"
    assert (temperature["unit_of_meas"], temperature["dev_cla"]) == ("°C", "temperature")
    assert "dev_cla" not in json.loads(wire.messages[1].payload)  # not an HA device class
    assert json.loads(wire.messages[3].payload) == {"temperature": 21.5, "m0": 3.0}


def test_cli_accepts_the_dialect_option_and_refuses_unknown_ones(
    capsys: pytest.CaptureFixture[str],
):
    with pytest.raises(SystemExit):
        main(["simulate", "--dialect", "modbus"])
    assert "invalid choice: 'modbus'" in capsys.readouterr().err
