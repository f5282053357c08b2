"""What the shard step produces for one call, and how a batch's segments are joined."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from contract import DeadLetterEvent
from contract.alarms import AlarmEvent
from dataflows.adapters.result import Command
from dataflows.columns import (
    AggregateColumns,
    EncodedPoints,
    LateColumns,
    PointColumns,
    PointEncoder,
    ReadingColumns,
    SeriesNames,
)
from dataflows.fresh import Fresh
from dataflows.registry import NONE, Registry
from dataflows.summaries import ActiveAlarms

__all__ = [
    "Announcement",
    "Part",
    "ShardOutput",
    "SiteReadings",
    "concat_parts",
    "encode_points",
    "late_columns",
    "site_readings",
]

Part = tuple["ReadingColumns | None", "LateColumns | None", list[int], list[int]]
"""What one segment of a batch yields: readings, late readings, arrivals, newest times."""


@dataclass(frozen=True, slots=True)
class SiteReadings:
    """One fresh telemetry event's readings, for the site-wide pattern step (rare)."""

    site: str
    device: str
    event_id: str
    traceparent: str | None
    readings: tuple[tuple[str, str, float, int], ...]
    """(sensor, metric, value, time in µs) of each reading with a value, in time order."""


@dataclass(frozen=True, slots=True)
class Announcement:
    """What one shard call tells sinks outside storage: series first seen, windows closed.

    Made only when the flow has such a sink (Home Assistant discovery). Series are rows
    of ``names``, the shard's append-only table (rows never change, so reading them
    later is safe); after a restart every restored series is announced again once.
    """

    names: SeriesNames
    new_series: range
    """Rows of ``names`` first seen (or restored) since the previous announcement."""
    aggregates: AggregateColumns | None = None
    """The windows this call closed (the same rows the points carry)."""


@dataclass(slots=True)
class ShardOutput:
    """What one call of the shard produced."""

    points: list[EncodedPoints | PointColumns] = field(default_factory=list)
    alarms: list[AlarmEvent | ActiveAlarms] = field(default_factory=list)
    deadletters: list[DeadLetterEvent] = field(default_factory=list)
    site_readings: list[SiteReadings] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    """Messages to publish for adapters (Sparkplug rebirth requests)."""
    announcements: list[Announcement] = field(default_factory=list)
    """New series and closed windows, when the shard was asked to announce them."""


def site_readings(fresh: Fresh, registry: Registry) -> list[SiteReadings]:
    """Each fresh event's valued readings, in time order, for the site step (rare)."""
    out = []
    names = registry.names
    series, t_us, value = fresh.series.tolist(), fresh.t_us.tolist(), fresh.value.tolist()
    pos = 0
    for k, n in enumerate(fresh.counts.tolist()):
        rows = [
            (names.sensor[series[r]], names.metric[series[r]], value[r], t_us[r])
            for r in range(pos, pos + n)
            if value[r] == value[r]
        ]
        rows.sort(key=lambda r: r[3])
        dev = fresh.devices[k]
        out.append(
            SiteReadings(
                registry.sites[dev],
                registry.devices[dev],
                fresh.event_ids[k],
                fresh.traceparents[k],
                tuple(rows),
            )
        )
        pos += n
    return out


def concat_parts(parts: list[Part]) -> Part:
    """Join the outputs of a batch's segments (one segment: returned as it is)."""
    if len(parts) == 1:
        return parts[0]
    received = [t for p in parts for t in p[2]]
    newest = [t for p in parts for t in p[3]]
    readings = [p[0] for p in parts if p[0] is not None]
    lates = [p[1] for p in parts if p[1] is not None]
    joined = None
    if readings:
        faults: dict[int, str] = {}
        offset = 0
        for r in readings:
            for row, text in (r.faults or {}).items():
                faults[offset + row] = text
            offset += len(r)
        joined = ReadingColumns(
            np.concatenate([r.series for r in readings]),
            np.concatenate([r.t_us for r in readings]),
            np.concatenate([r.value for r in readings]),
            np.concatenate([r.seq for r in readings]),
            faults or None,
        )
    late = None
    if lates:
        late = LateColumns(
            np.concatenate([x.series for x in lates]),
            np.concatenate([x.t_us for x in lates]),
            np.concatenate([x.value for x in lates]),
            np.concatenate([x.seq for x in lates]),
            np.concatenate([x.watermark_us for x in lates]),
            [e for x in lates for e in x.event_id],
        )
    return joined, late, received, newest


def encode_points(
    encoder: PointEncoder | None,
    points: PointColumns,
    received_us: list[int],
    newest_us: list[int],
) -> EncodedPoints | PointColumns | None:
    """Return what the points sink gets: line protocol (or the columns, without encoder).

    ``received_us``: the arrival times of the readings' messages; ``newest_us``: each
    message's newest reading time (``NONE`` where it had no value). None: nothing to store.
    """
    if points.empty:
        return None
    if encoder is None:
        return points
    r, a, late = points.readings, points.aggregates, points.late
    raw, aggregates = encoder.encode_parts(points)
    return EncodedPoints(
        body=raw,
        aggregates_body=aggregates,
        lines=(len(r) if r else 0) + (len(a) if a else 0) + (len(late) if late else 0),
        readings=len(r) if r else 0,
        aggregates=len(a) if a else 0,
        late=len(late) if late else 0,
        received_us=np.asarray(received_us, np.int64),
        newest_us=np.asarray([t for t in newest_us if t != NONE], np.int64),
    )


def late_columns(
    late: npt.NDArray[np.bool_],
    fresh: Fresh,
    wm_msg: list[int],
    msg_of_row: npt.NDArray[np.int64],
) -> LateColumns:
    """Return the ``late`` rows of ``fresh`` with the watermark each missed."""
    rows = np.flatnonzero(late)
    msgs = msg_of_row[rows]
    return LateColumns(
        series=fresh.series[rows],
        t_us=fresh.t_us[rows],
        value=fresh.value[rows],
        seq=np.asarray(fresh.seqs, np.int64)[msgs],
        watermark_us=np.asarray(wm_msg, np.int64)[msgs],
        event_id=[fresh.event_ids[m] for m in msgs.tolist()],
    )
