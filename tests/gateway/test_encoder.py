"""The columnar line-protocol encoder, against the per-reading functions it replaces."""

from __future__ import annotations

import math
import re
import struct
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import Reading, TelemetryEvent
from dataflows.columns import (
    AggregateColumns,
    LateColumns,
    PointColumns,
    ReadingColumns,
    SeriesNames,
)
from gateway.influx.encoder import AGGREGATE_FIELDS, LineProtocolEncoder
from gateway.influx.lineprotocol import escape_tag, reading_lines

T0 = 1_767_225_600_000_000  # 2026-01-01 in µs

# What InfluxDB 1.x accepts as a float field value (models/points.go, scanNumber).
INFLUX_FLOAT = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")

ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/+#$"),
    min_size=1,
    max_size=20,
).filter(lambda s: not s.endswith("\\"))


def readings(
    series: list[int],
    values: list[float],
    *,
    faults: dict[int, str] | None = None,
    seq: list[int] | None = None,
) -> ReadingColumns:
    n = len(series)
    return ReadingColumns(
        series=np.array(series, np.int32),
        t_us=T0 + np.arange(n, dtype=np.int64),
        value=np.array(values, np.float64),
        seq=np.array(seq if seq is not None else range(n), np.int64),
        faults=faults,
    )


def aggregates(n: int, **overrides: object) -> AggregateColumns:
    columns: dict[str, object] = {
        "series": np.arange(n, dtype=np.int32),
        "window": np.zeros(n, np.int8),
        "window_names": ("10s", "1 m"),
        "start_us": np.full(n, T0, np.int64),
        "count": np.full(n, 3, np.int64),
        "mean": np.full(n, 2.5),
        "min": np.full(n, 1.0),
        "max": np.full(n, 4.0),
        "stddev": np.full(n, 0.5),
        "first": np.full(n, 1.0),
        "last": np.full(n, 4.0),
    }
    columns.update(overrides)
    return AggregateColumns(**columns)  # type: ignore[arg-type]


def names_of(*rows: tuple[str, str, str, str]) -> SeriesNames:
    names = SeriesNames()
    for row in rows:
        names.add(*row)
    return names


def lines(body: bytes) -> list[str]:
    assert body.endswith(b"\n")
    return body.decode().split("\n")[:-1]


def test_reading_lines_have_sorted_escaped_tags_and_microseconds() -> None:
    names = names_of(("plant 1", "pump,7", "env=x", "temp"), ("s", "d", "w", "m"))
    body = LineProtocolEncoder().encode(PointColumns(names, readings=readings([0, 1], [21.5, 3.0])))
    assert lines(body) == [
        f"readings,device=pump\\,7,metric=temp,sensor=env\\=x,site=plant\\ 1 value=21.5 {T0}",
        f"readings,device=d,metric=m,sensor=w,site=s value=3.0 {T0 + 1}",
    ]


def test_seq_is_written_only_when_asked() -> None:
    names = names_of(("s", "d", "w", "m"))
    points = PointColumns(names, readings=readings([0], [1.0], seq=[42]))
    assert lines(LineProtocolEncoder(include_seq=True).encode(points)) == [
        f"readings,device=d,metric=m,sensor=w,site=s value=1.0,seq=42i {T0}"
    ]
    assert b"seq" not in LineProtocolEncoder().encode(points)


def test_fault_rows_carry_the_escaped_fault_text() -> None:
    names = names_of(("s", "d", "w", "m"))
    faults = {1: 'crc "NO"\\ok\nline two'}
    points = PointColumns(names, readings=readings([0, 0], [1.0, math.nan], faults=faults))
    assert lines(LineProtocolEncoder(include_seq=True).encode(points)) == [
        f"readings,device=d,metric=m,sensor=w,site=s value=1.0,seq=0i {T0}",
        'readings,device=d,metric=m,sensor=w,site=s fault="crc \\"NO\\"\\\\ok',
        f'line two",seq=1i {T0 + 1}',  # a string field may hold a newline
    ]


def test_non_finite_values_are_never_written() -> None:
    names = names_of(("s", "d", "w", "m"))
    values = [1.0, math.nan, math.inf, -math.inf, 2.0]
    encoder = LineProtocolEncoder()
    encoded = encoder.encode_points(PointColumns(names, readings=readings([0] * 5, values)))
    assert [line.split(" ")[1] for line in lines(encoded.body)] == ["value=1.0", "value=2.0"]
    assert (encoded.lines, encoded.readings, encoder.dropped) == (2, 2, 3)

    all_bad = PointColumns(names, readings=readings([0], [math.nan]))
    assert encoder.encode(all_bad) == b""
    assert encoder.dropped == 4


def parts(line: str) -> tuple[str, str, str]:
    """Cut a line without string fields into series key, fields and timestamp."""
    key, fields, ts = re.split(r"(?<!\\) ", line)
    return key, fields, ts


def fields(line: str) -> dict[str, str]:
    """The fields of a line without string fields (their order does not matter)."""
    return dict(part.split("=", 1) for part in parts(line)[1].split(","))


def test_aggregates_with_every_field_and_stddev_left_out_where_nan() -> None:
    names = names_of(("s", "d", "w", "m"), ("s", "d", "w", "n"))
    agg = aggregates(2, window=np.array([0, 1], np.int8), stddev=np.array([0.5, math.nan]))
    got = lines(LineProtocolEncoder().encode(PointColumns(names, aggregates=agg)))
    assert [(parts(line)[0], parts(line)[2]) for line in got] == [
        ("aggregates,device=d,metric=m,sensor=w,site=s,window=10s", str(T0)),
        ("aggregates,device=d,metric=n,sensor=w,site=s,window=1\\ m", str(T0)),
    ]
    every = {"count": "3i", "mean": "2.5", "min": "1.0", "max": "4.0", "first": "1.0"}
    every["last"] = "4.0"
    assert fields(got[0]) == {**every, "stddev": "0.5"}
    assert fields(got[1]) == every


def test_aggregate_field_sets_are_a_constructor_option() -> None:
    names = names_of(("s", "d", "w", "m"), ("s", "d", "w", "n"), ("s", "d", "w", "o"))
    agg = aggregates(
        3,
        mean=np.array([1.5, math.nan, math.inf]),
        last=np.array([2.0, 7.0, math.nan]),
    )
    encoder = LineProtocolEncoder(aggregate_fields=("last", "mean"))
    assert encoder.aggregate_fields == ("mean", "last")
    got = lines(encoder.encode(PointColumns(names, aggregates=agg)))
    assert [fields(line) for line in got] == [{"mean": "1.5", "last": "2.0"}, {"last": "7.0"}]
    assert encoder.dropped == 1  # the third has no finite field left

    with pytest.raises(ValueError, match="aggregate_fields"):
        LineProtocolEncoder(aggregate_fields=("mean", "median"))
    assert LineProtocolEncoder().aggregate_fields == AGGREGATE_FIELDS


def test_late_readings_keep_their_schema() -> None:
    names = names_of(("s", "d", "w", "m"))
    late = LateColumns(
        series=np.array([0, 0], np.int32),
        t_us=np.array([T0, T0 + 5]),
        value=np.array([1.25, math.inf]),
        seq=np.array([7, 8]),
        watermark_us=np.array([T0 + 10, T0 + 20]),
        event_id=["e-1", 'e"2'],
    )
    encoded = LineProtocolEncoder().encode_points(PointColumns(names, late=late))
    assert lines(encoded.body) == [
        "late_readings,device=d,metric=m,sensor=w,site=s value=1.25,seq=7i"
        f',watermark={(T0 + 10) * 1000}i,event_id="e-1" {T0}',
        "late_readings,device=d,metric=m,sensor=w,site=s seq=8i"
        f',watermark={(T0 + 20) * 1000}i,event_id="e\\"2" {T0 + 5}',
    ]
    assert encoded.late == 2


def test_raw_lines_and_aggregates_come_in_two_bodies_with_counts() -> None:
    names = names_of(("s", "d", "w", "m"))
    late = LateColumns(
        series=np.array([0], np.int32),
        t_us=np.array([T0]),
        value=np.array([1.0]),
        seq=np.array([1]),
        watermark_us=np.array([T0]),
        event_id=["e"],
    )
    points = PointColumns(
        names, readings=readings([0, 0], [1.0, 2.0]), aggregates=aggregates(1), late=late
    )
    encoder = LineProtocolEncoder()
    encoded = encoder.encode_points(points)
    assert (encoded.lines, encoded.readings, encoded.aggregates, encoded.late) == (4, 2, 1, 1)
    # Raw (readings, late readings) and aggregates go to different retention policies.
    assert [line.split(b",")[0] for line in encoded.body.splitlines()] == [
        b"readings",
        b"readings",
        b"late_readings",
    ]
    assert [line.split(b",")[0] for line in encoded.aggregates_body.splitlines()] == [b"aggregates"]
    assert encoder.encode_parts(points) == (encoded.body, encoded.aggregates_body)
    assert encoder.encode(points) == encoded.body + encoded.aggregates_body
    assert LineProtocolEncoder().encode(PointColumns(names)) == b""
    assert LineProtocolEncoder().encode_parts(PointColumns(names)) == (b"", b"")


def test_the_tag_cache_grows_with_the_table() -> None:
    names = names_of(("s", "d0", "w", "m"))
    encoder = LineProtocolEncoder()
    encoder.encode(PointColumns(names, readings=readings([0], [1.0])))
    assert encoder.cached_rows(names) == 1
    for i in range(1, 40):  # a growing fleet: a few new rows per batch
        names.add("s", f"d{i}", "w", "m")
        names.add("s", f"d{i} x", "w", "m")
    body = encoder.encode(PointColumns(names, readings=readings([0, 1, 78, 77], [1, 2, 3, 4])))
    assert encoder.cached_rows(names) == 79
    assert [line.split(",")[1] for line in lines(body)] == [
        "device=d0",
        "device=d1",
        "device=d39\\ x",
        "device=d39",
    ]


def test_the_tag_cache_forgets_the_least_recently_used_tables() -> None:
    encoder = LineProtocolEncoder(max_tables=2)
    tables = [names_of(("s", f"d{i}", "w", "m")) for i in range(3)]
    for names in tables:
        encoder.encode(PointColumns(names, readings=readings([0], [1.0])))
    assert [encoder.cached_rows(t) for t in tables] == [0, 1, 1]
    # Forgotten is not wrong: the table is escaped again when it comes back.
    body = encoder.encode(PointColumns(tables[0], readings=readings([0], [1.0])))
    assert b"device=d0," in body


def test_an_index_outside_the_table_is_refused() -> None:
    names = names_of(("s", "d", "w", "m"))
    with pytest.raises(ValueError, match="series index out of range"):
        LineProtocolEncoder().encode(PointColumns(names, readings=readings([1], [1.0])))


AWKWARD = [1e308, -1e308, 5e-324, -0.0, 1e-7, 2.5e16, 123456789012345678.0, 0.1, 20.0, 1e21]


@pytest.mark.parametrize("value", AWKWARD)
def test_awkward_floats_match_the_influx_grammar_and_read_back_exactly(value: float) -> None:
    names = names_of(("s", "d", "w", "m"))
    body = LineProtocolEncoder().encode(PointColumns(names, readings=readings([0], [value])))
    text = lines(body)[0].split(" ")[1].removeprefix("value=")
    assert INFLUX_FLOAT.fullmatch(text), text
    assert struct.pack("<d", float(text)) == struct.pack("<d", value)


@settings(max_examples=200, deadline=None)
@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_any_finite_float_is_rendered_exactly(value: float) -> None:
    names = names_of(("s", "d", "w", "m"))
    body = LineProtocolEncoder().encode(PointColumns(names, readings=readings([0], [value])))
    text = lines(body)[0].split(" ")[1].removeprefix("value=")
    assert INFLUX_FLOAT.fullmatch(text), text
    assert struct.pack("<d", float(text)) == struct.pack("<d", value)


@settings(max_examples=100, deadline=None)
@given(site=ids, device=ids, sensor=ids, metric=ids)
def test_tags_are_escaped_exactly_as_the_per_event_path(
    site: str, device: str, sensor: str, metric: str
) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    event = TelemetryEvent.create(
        site=site,
        device=device,
        sequence=42,
        readings=[Reading(sensor=sensor, metric=metric, value=1.5, time=when)],
    )
    old = reading_lines(event)[0]
    names = names_of((site, device, sensor, metric))
    cols = readings([0], [1.5], seq=[42])
    new = lines(LineProtocolEncoder(include_seq=True).encode(PointColumns(names, readings=cols)))
    # Same series key and fields; the new timestamp is in µs (the old one in ns).
    assert new[0].rsplit(" ", 1)[0] == old.rsplit(" ", 1)[0]
    assert f"device={escape_tag(device)}," in new[0]
