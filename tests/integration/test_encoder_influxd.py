"""The columnar encoder's bodies, written to a real influxd 1.6 and read back bit for bit."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from dataflows.columns import (
    AggregateColumns,
    LateColumns,
    PointColumns,
    ReadingColumns,
    SeriesNames,
)
from gateway.influx.encoder import LineProtocolEncoder
from gateway.influx.pipeline import make_pipelined_writer
from gateway.influx.writer import V1Writer
from gateway.localstack.services import ServiceEndpoints
from gateway.settings import InfluxSettings

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000_000  # µs

AWKWARD = [
    1e308,
    -1e308,
    5e-324,
    -5e-324,
    -0.0,
    0.0,
    1e-7,
    2.5e16,
    123456789012345678.0,
    0.1,
    20.0,
    1.7976931348623157e308,
    2.2250738585072014e-308,
    1e21,
    -123.456,
]

# Everything escape_tag handles, plus what it writes as is (an inner backslash, quotes,
# non-ASCII). Ids never end in a backslash (the contract refuses it).
HOSTILE = [
    ("plant 1", "pump,7", "env=x", "temp c"),
    ('q"uote', "back\\slash", "caf\u00e9 \u2603", "a,b=c d"),
    ("s", "=lead", ",lead", " lead"),
    ("s", "'single'", '"dq"', "tab\u00a0nbsp"),
]


def _bits(value: float) -> bytes:
    return struct.pack("<d", value)


def _number(text: str) -> float:
    # influxd's JSON writes -0.0 as "-0" and 20.0 as "20": read every number as a float.
    return float(text)


def query(url: str, db: str, q: str) -> list[dict[str, Any]]:
    resp = httpx.get(f"{url}/query", params={"db": db, "q": q, "epoch": "u"}, timeout=30)
    resp.raise_for_status()
    doc = json.loads(resp.text, parse_int=_number, parse_float=_number)
    rows = []
    for result in doc["results"]:
        assert "error" not in result, result
        for series in result.get("series", []):
            for values in series["values"]:
                row = {
                    **series.get("tags", {}),
                    **dict(zip(series["columns"], values, strict=True)),
                }
                rows.append(row)
    return rows


def test_awkward_floats_and_hostile_tags_round_trip_exactly(
    services: ServiceEndpoints, unique: str, tmp_path: Path
) -> None:
    db = f"t_{unique}"
    settings = InfluxSettings(url=services.influx_url, database=db, spill_dir=tmp_path / "spill")
    setup = V1Writer(settings)
    setup.ensure_database()
    setup.close()

    names = SeriesNames()
    for site, device, sensor, metric in HOSTILE:
        names.add(site, device, sensor, metric)
    n_series, n_values = len(HOSTILE), len(AWKWARD)
    series = np.repeat(np.arange(n_series, dtype=np.int32), n_values + 3)
    values = np.tile([*AWKWARD, math.nan, math.inf, math.nan], n_series)
    t_us = T0 + np.tile(np.arange(n_values + 3, dtype=np.int64), n_series)
    fault_text = 'sensor said "no"\\ then\nstopped, = ok'
    fault_rows = {i * (n_values + 3) + n_values + 2: fault_text for i in range(n_series)}
    readings = ReadingColumns(
        series=series,
        t_us=t_us,
        value=values,
        seq=np.arange(len(series), dtype=np.int64),
        faults=fault_rows,
    )
    aggregates = AggregateColumns(
        series=np.arange(n_series, dtype=np.int32),
        window=np.array([0, 1, 0, 1], np.int8),
        window_names=("10s", "1 m,x"),
        start_us=np.full(n_series, T0, np.int64),
        count=np.array([1, 2, 3, 4], np.int64),
        mean=np.array([1e308, -0.0, 5e-324, 0.1]),
        min=np.array([1.0, 2.0, 3.0, 4.0]),
        max=np.array([1.0, 2.0, 3.0, 4.0]),
        stddev=np.array([math.nan, 0.5, math.inf, 2.5e16]),
        first=np.array([1.0, 2.0, 3.0, 4.0]),
        last=np.array([1.0, 2.0, 3.0, 4.0]),
    )
    late = LateColumns(
        series=np.array([1], np.int32),
        t_us=np.array([T0 - 10]),
        value=np.array([123456789012345678.0]),
        seq=np.array([9]),
        watermark_us=np.array([T0]),
        event_id=['ev"1'],
    )
    encoder = LineProtocolEncoder(include_seq=True)
    encoded = encoder.encode_points(
        PointColumns(names, readings=readings, aggregates=aggregates, late=late)
    )
    assert encoder.dropped == 2 * n_series  # NaN and inf rows, never written

    writer = make_pipelined_writer(settings)
    try:
        writer.submit(encoded.body, encoded.lines - encoded.aggregates)
        writer.submit(encoded.aggregates_body, encoded.aggregates)
        writer.flush(timeout=60)
        assert writer.stats.rejected_points == 0
        assert writer.stats.points_written == encoded.lines
    finally:
        writer.close()

    got = query(services.influx_url, db, "SELECT * FROM readings GROUP BY *")
    by_key = {(r["site"], r["device"], r["sensor"], r["metric"], int(r["time"])): r for r in got}
    assert len(got) == n_series * (n_values + 1)
    for i, (site, device, sensor, metric) in enumerate(HOSTILE):
        for j, value in enumerate(AWKWARD):
            row = by_key[(site, device, sensor, metric, T0 + j)]
            assert _bits(row["value"]) == _bits(value), (HOSTILE[i], value, row["value"])
            assert row["fault"] is None
        fault = by_key[(site, device, sensor, metric, T0 + n_values + 2)]
        assert fault["fault"] == fault_text
        assert fault["value"] is None

    aggs = query(services.influx_url, db, "SELECT * FROM aggregates GROUP BY *")
    by_metric = {(r["metric"], r["window"]): r for r in aggs}
    assert set(by_metric) == {
        ("temp c", "10s"),
        ("a,b=c d", "1 m,x"),
        (" lead", "10s"),
        ("tab\u00a0nbsp", "1 m,x"),
    }
    first = by_metric[("temp c", "10s")]
    assert (_bits(first["mean"]), first["count"], first["stddev"]) == (_bits(1e308), 1, None)
    assert _bits(by_metric[("a,b=c d", "1 m,x")]["mean"]) == _bits(-0.0)
    assert by_metric[(" lead", "10s")]["stddev"] is None  # inf: left out
    assert _bits(by_metric[("tab\u00a0nbsp", "1 m,x")]["stddev"]) == _bits(2.5e16)

    (late_row,) = query(services.influx_url, db, "SELECT * FROM late_readings GROUP BY *")
    assert (late_row["device"], late_row["event_id"]) == ("back\\slash", 'ev"1')
    assert _bits(late_row["value"]) == _bits(123456789012345678.0)
    assert (int(late_row["time"]), late_row["watermark"]) == (T0 - 10, T0 * 1000)
