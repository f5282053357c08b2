"""The InfluxDB v2 write path (influxdb-client) against a real v2-compatible server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

from contract import Reading, TelemetryEvent
from dataflows.columns import PointColumns, ReadingColumns, SeriesNames
from gateway.influx.encoder import LineProtocolEncoder
from gateway.influx.lineprotocol import reading_lines
from gateway.influx.writer import make_writer
from gateway.influx.writer_v2 import V2Writer
from gateway.localstack.services import start_victoria_metrics
from gateway.settings import InfluxSettings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def vm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, port = start_victoria_metrics(Path(tmp_path_factory.mktemp("vm")))
    yield f"http://127.0.0.1:{port}"
    proc.stop()


def test_v2_writer_delivers_escaped_points(vm_url: str) -> None:
    settings = InfluxSettings(
        url=vm_url, api="v2", token="t0ken", org="acme", bucket="sensors", batch_size=7
    )
    writer = make_writer(settings)
    assert isinstance(writer, V2Writer)
    when = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    events = [
        TelemetryEvent.create(
            site="plant 1",
            device=device,
            sequence=i,
            readings=[
                Reading(sensor="env", metric="temp", value=20.0 + i, time=when.replace(second=i))
            ],
        )
        for i, device in enumerate(["pump,1", "valve=2", "tank 3", "caf\u00e9"] * 5)
    ]
    lines = [line for e in events for line in reading_lines(e)]
    writer.write(lines)
    writer.close()

    httpx.get(f"{vm_url}/internal/force_flush")
    resp = httpx.get(
        f"{vm_url}/api/v1/export",
        params={"match[]": '{__name__="readings_value"}', "start": "2026-10-01T00:00:00Z"},
    )
    series = [json.loads(line) for line in resp.text.splitlines()]
    got = {}
    for s in series:
        for value, ts in zip(s["values"], s["timestamps"], strict=True):
            got[(s["metric"]["device"], ts)] = value
    expected = {
        (e.data.device, int(e.data.readings[0].time.timestamp() * 1000)): e.data.readings[0].value
        for e in events
    }
    assert got == expected
    assert {s["metric"]["site"] for s in series} == {"plant 1"}


def test_v2_writer_posts_encoder_bodies_in_microseconds(vm_url: str) -> None:
    names = SeriesNames()
    names.add("plant 2", "pump,9", "env", "temp")
    t0_us = 1_793_534_400_000_000  # 2026-11-01 12:00 UTC
    readings = ReadingColumns(
        series=np.zeros(3, np.int32),
        t_us=t0_us + np.array([0, 1_000, 2_000], np.int64),
        value=np.array([1.5, -0.25, 1e-7]),
        seq=np.arange(3, dtype=np.int64),
    )
    encoded = LineProtocolEncoder().encode_points(PointColumns(names, readings=readings))
    settings = InfluxSettings(url=vm_url, api="v2", token="t0ken", org="acme", bucket="sensors")
    writer = make_writer(settings)
    writer.write_body(encoded.body, encoded.lines, precision="u")
    writer.close()

    httpx.get(f"{vm_url}/internal/force_flush")
    resp = httpx.get(
        f"{vm_url}/api/v1/export",
        params={
            "match[]": '{__name__="readings_value",device="pump,9"}',
            "start": "2026-10-01T00:00:00Z",
        },
    )
    (series,) = [json.loads(line) for line in resp.text.splitlines()]
    # VictoriaMetrics keeps milliseconds: the µs timestamps arrive scaled, not as ns.
    assert series["timestamps"] == [t0_us // 1000, t0_us // 1000 + 1, t0_us // 1000 + 2]
    assert series["values"] == [1.5, -0.25, 1e-7]
    assert series["metric"]["site"] == "plant 2"
