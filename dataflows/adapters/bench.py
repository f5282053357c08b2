"""Micro-benchmark: readings per second per core for each adapter family.

``python -m dataflows.adapters.bench [--seconds 1] [--out FILE.json]`` adapts a typical
message of each family over and over (one thread, CPU time measured with
``time.process_time``) and prints messages/s, readings/s and µs per message. The
messages are the documented shapes the tests use; the figures are for ``adapt`` alone
(no broker, no dedupe, no storage).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from dataflows.adapters import AdapterSet, parse_adapters

__all__ = ["main", "workloads"]

NOW = 1_760_000_000_000_000


def _sparkplug() -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    from dataflows.adapters.sparkplug import sparkplug_b_pb2 as pb

    birth = pb.Payload(timestamp=NOW // 1000, seq=0)
    bd = birth.metrics.add()
    bd.name, bd.datatype, bd.long_value = "bdSeq", 4, 1
    for i in range(10):
        m = birth.metrics.add()
        m.name, m.alias, m.datatype, m.double_value = f"Line/Sensor{i}", i + 1, 10, float(i)
    data = []
    for seq in range(1, 256):
        msg = pb.Payload(timestamp=NOW // 1000 + seq, seq=seq)
        for i in range(10):
            m = msg.metrics.add()
            m.alias, m.double_value = i + 1, seq + i / 10
        data.append(("spBv1.0/plant/NDATA/edge1", msg.SerializeToString()))
    return [("spBv1.0/plant/NBIRTH/edge1", birth.SerializeToString())], data


# The documented message shapes of the adapter tests, one per family.
_Z2M_STATE = (
    b'{"battery":91,"humidity":51.32,"linkquality":96,'
    b'"pressure":1008.4,"temperature":22.6,"voltage":2985}'
)
_TASMOTA_SENSOR = (
    b'{"Time":"2025-10-09T08:50:00","AM2301":{"Temperature":24.6,'
    b'"Humidity":58.2},"ENERGY":{"Total":1.5,"Today":0.3,"Power":40,"Voltage":230,'
    b'"Current":0.17,"Factor":0.9},"TempUnit":"C"}'
)
_SHELLY2_NOTIFY = (
    b'{"src":"shellyplus1pm-44","method":"NotifyStatus",'
    b'"params":{"ts":1760000000.12,"switch:0":{"id":0,"apower":8.9,"voltage":230.1,'
    b'"current":0.04,"aenergy":{"total":1234.5,"by_minute":[0,0,0],'
    b'"minute_ts":1760000000},"temperature":{"tC":45.1,"tF":113.2}}}}'
)
_HA_STATE = b'{"temperature":23.2,"humidity":43.7,"linkquality":80}'


def _telegraf_lines() -> bytes:
    return "\n".join(
        f"cpu,cpu=cpu{i},host=web01 usage_idle={90 + i * 0.1},usage_user={i * 0.3} "
        f"1760000000{i:03d}000000"
        for i in range(20)
    ).encode()


def _ha_config() -> bytes:
    def sensor(cla: str, unit: str, template: str, uid: str) -> dict[str, str]:
        return {
            "p": "sensor",
            "dev_cla": cla,
            "unit_of_meas": unit,
            "val_tpl": template,
            "uniq_id": uid,
        }

    return json.dumps(
        {
            "dev": {"ids": ["bedroom01"], "name": "Bedroom"},
            "o": {"name": "bench"},
            "cmps": {
                "t": sensor("temperature", "°C", "{{ value_json.temperature }}", "t1"),
                "h": sensor("humidity", "%", "{{ value_json.humidity | float }}", "h1"),
            },
            "stat_t": "bedroom/state",
        }
    ).encode()


def workloads() -> dict[
    str, tuple[dict[str, Any], list[tuple[str, bytes]], list[tuple[str, bytes]]]
]:
    """Per family: (adapter table, setup messages, measured messages)."""
    births, sparkplug_data = _sparkplug()
    return {
        "zigbee2mqtt": ({"kind": "zigbee2mqtt"}, [], [("zigbee2mqtt/kitchen", _Z2M_STATE)]),
        "tasmota": ({"kind": "tasmota"}, [], [("tele/plug/SENSOR", _TASMOTA_SENSOR)]),
        "shelly-gen1": ({"kind": "shelly"}, [], [("shellies/plug-1/relay/0/power", b"49.97")]),
        "shelly-gen2": (
            {"kind": "shelly"},
            [],
            [("shellyplus1pm-44/events/rpc", _SHELLY2_NOTIFY)],
        ),
        "homeassistant": (
            {"kind": "homeassistant", "state_filters": ["bedroom/#"]},
            [("homeassistant/device/bedroom01/config", _ha_config())],
            [("bedroom/state", _HA_STATE)],
        ),
        "sparkplug": ({"kind": "sparkplug"}, births, sparkplug_data),
        "telegraf": ({"kind": "telegraf"}, [], [("telegraf/web01/cpu", _telegraf_lines())]),
    }


def _measure(
    adapt: Callable[[str, bytes, int], Any], messages: list[tuple[str, bytes]], seconds: float
) -> tuple[int, int, float]:
    done = readings = 0
    start = time.process_time()
    received = NOW
    while True:
        for topic, payload in messages:
            received += 1000
            result = adapt(topic, payload, received)
            readings += result.readings
            done += 1
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return done, readings, elapsed


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table (and write JSON with --out)."""
    parser = argparse.ArgumentParser(prog="python -m dataflows.adapters.bench")
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per family (1)")
    parser.add_argument("--out", default=None, help="write the figures as JSON to this file")
    args = parser.parse_args(argv)
    rows = []
    for family, (table, setup, messages) in workloads().items():
        aset = AdapterSet(parse_adapters({"adapter": [{"name": "bench", **table}]}))
        for topic, payload in setup:
            aset.adapt(topic, payload, NOW)
        probe = aset.adapt(messages[0][0], messages[0][1], NOW)
        if probe is None or not probe.ok:
            raise SystemExit(f"{family}: the benchmark message does not adapt: {probe}")
        adapter = aset.adapters[0]
        done, readings, elapsed = _measure(adapter.adapt, messages, args.seconds)
        rows.append(
            {
                "family": family,
                "readings_per_message": readings / done,
                "messages_per_s": done / elapsed,
                "readings_per_s": readings / elapsed,
                "us_per_message": elapsed / done * 1e6,
            }
        )
    print(f"{'family':<14}{'readings/msg':>13}{'msgs/s':>11}{'readings/s':>12}{'µs/msg':>9}")
    for r in rows:
        print(
            f"{r['family']:<14}{r['readings_per_message']:>13.1f}{r['messages_per_s']:>11,.0f}"
            f"{r['readings_per_s']:>12,.0f}{r['us_per_message']:>9.1f}"
        )
    if args.out:
        doc = {
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "cpu_seconds_per_family": args.seconds,
            "results": rows,
        }
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
