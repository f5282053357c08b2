"""One sample line of every InfluxDB measurement, as the gateway's own writers write it.

For the schema table of docs/architecture.md (``scripts/gen_docs.py``): the columnar
encoder (readings, faults, aggregates, late readings; by default and with every
optional field), the alarm and dead-letter lines, and the replay measurements.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

__all__ = ["line_keys", "sample_lines"]

_NOW_US = 1_767_225_600_000_000


def sample_lines() -> Iterator[tuple[str, str, bool]]:
    """Yield (measurement, line, on by default) as the gateway's own writers write them."""
    from contract.events import DeadLetterEvent
    from contract.reasons import DeadLetterReason
    from gateway.influx.lineprotocol import aggregate_line, alarm_line, deadletter_line

    yield from _point_lines()
    alarm = _alarm()
    yield "alarms", alarm_line(alarm), True
    yield "replay_alarms", alarm_line(alarm, "replay_alarms"), True
    yield "replay_aggregates", "replay_" + aggregate_line(_aggregate()), True
    letter = DeadLetterEvent.create(
        reason=DeadLetterReason.NOT_JSON, error="e", topic="t", payload=b"x" * 10, keep_bytes=1
    )
    yield "deadletters", deadletter_line(letter), True


def _point_lines() -> Iterator[tuple[str, str, bool]]:
    """Yield the encoder's lines: readings, a fault, aggregates, late; default and all fields."""
    import numpy as np

    from dataflows.columns import (
        AggregateColumns,
        LateColumns,
        PointColumns,
        ReadingColumns,
        SeriesNames,
    )
    from gateway.influx.encoder import AGGREGATE_FIELDS, LineProtocolEncoder

    names = SeriesNames()
    names.add("site", "device", "sensor", "metric")
    one = np.array([0], np.int32)
    t = np.array([_NOW_US], np.int64)
    x = np.array([1.5])
    readings = ReadingColumns(series=one, t_us=t, value=x, seq=np.array([1]))
    faulty = ReadingColumns(
        series=one, t_us=t, value=np.array([np.nan]), seq=np.array([1]), faults={0: "x"}
    )
    aggregates = AggregateColumns(
        series=one,
        window=np.array([0], np.int8),
        window_names=("1m",),
        start_us=t,
        count=np.array([2]),
        mean=x,
        min=x,
        max=x,
        stddev=x,
        first=x,
        last=x,
    )
    late = LateColumns(
        series=one, t_us=t, value=x, seq=np.array([1]), watermark_us=t, event_id=["e"]
    )
    for default, encoder in (
        (True, LineProtocolEncoder()),
        (False, LineProtocolEncoder(include_seq=True, aggregate_fields=AGGREGATE_FIELDS)),
    ):
        for columns in (
            PointColumns(names, readings=readings),
            PointColumns(names, readings=faulty),
            PointColumns(names, aggregates=aggregates),
            PointColumns(names, late=late),
        ):
            for line in encoder.encode(columns).decode().splitlines():
                yield line.split(",", 1)[0], line, default


def _alarm() -> Any:
    """Return a raised alarm with every optional field set."""
    from contract.alarms import AlarmDetail, AlarmRaisedEvent, AlarmState, Severity

    when = datetime.fromtimestamp(_NOW_US / 1e6, UTC)
    detail: dict[str, Any] = {}
    for name, info in AlarmDetail.model_fields.items():
        kind = typing.get_args(info.annotation)[0] if typing.get_args(info.annotation) else str
        detail[name] = 1 if "int" in str(kind) else "x" if "str" in str(kind) else 1.0
    return AlarmRaisedEvent.create(
        alarm_id="a",
        site="site",
        device="device",
        rule="rule",
        kind="threshold",
        severity=Severity.MAJOR,
        state=AlarmState.ACTIVE,
        value=1.0,
        threshold=1.0,
        message="m",
        event_time=when,
        raised_at=when,
        cause_event_id="e",
        cause_reading="r",
        acknowledged_by="o",
        acknowledged_at=when,
        flapping=True,
        detail=AlarmDetail(**detail),
        folded_raises=1,
        rate_limited=True,
    )


def _aggregate() -> Any:
    """Return a closed window's aggregate."""
    from dataflows.windows import Aggregate

    return Aggregate(
        site="site",
        device="device",
        sensor="sensor",
        metric="metric",
        window="1m",
        start_us=_NOW_US,
        end_us=_NOW_US,
        count=2,
        mean=1.5,
        min=1.0,
        max=2.0,
        stddev=0.5,
        first=1.0,
        last=2.0,
    )


def line_keys(line: str) -> tuple[list[str], list[str]]:
    """Return the tag keys and field keys of one line (no escaped separators in it)."""
    series, fields, _time = line.rsplit(" ", 2)
    tags = [t.split("=", 1)[0] for t in series.split(",")[1:]]
    return tags, [
        f.split("=", 1)[0] for f in re.findall(r'(?:^|,)([a-z_0-9]+=(?:"[^"]*"|[^,]*))', fields)
    ]
