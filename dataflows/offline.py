"""The gateway's own shard engine over recorded data, on a clock that follows event time.

``sensorgate detect``, ``evaluate`` and ``replay`` must judge data exactly as the live
gateway does, so they run the same :class:`~dataflows.shard.ShardProcessor`, fed
columns instead of MQTT messages. Time is event time throughout: the clock is set to
the data's own times, deadman silence is measured between readings (a gap in the file
is silence), and windows close as soon as event time passes their end (no allowed
lateness: recorded data is in order).

Readings are fed in chunks of consecutive events for speed; a chunk also ends wherever
the gap before the next event is longer than the shortest deadman silence (the floor of
an auto silence), and the
clock is moved to that next event's time first, so a silence raises its alarm at the
same point as with one event at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from contract import TopicScheme
from contract.alarms import AlarmEvent
from dataflows.columns import PointColumns
from dataflows.config import StreamConfig
from dataflows.decode import DecodedBatch
from dataflows.eventclock import FakeClock
from dataflows.registry import Registry
from dataflows.rules import RuleSet, StaticRules
from dataflows.shard import ShardProcessor
from dataflows.shard_output import ShardOutput
from dataflows.summaries import ActiveAlarms
from dataflows.windows import Aggregate, aggregates_of, parse_window

__all__ = ["OfflineDevice", "OfflineEvents", "OfflineResult", "columns_batch", "run_offline"]

_FOREVER_US = 10**18
_CHUNK_EVENTS = 512


@dataclass(frozen=True, slots=True)
class OfflineEvents:
    """One device's recorded telemetry as columns, events in time order.

    Event ``k`` holds ``counts[k]`` consecutive readings of the reading arrays.
    """

    event_ids: Sequence[str]
    counts: npt.NDArray[np.int64]
    sensors: Sequence[str]
    metrics: Sequence[str]
    t_us: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    """NaN for a fault (its text in ``faults``, by reading row)."""
    faults: dict[int, str] = field(default_factory=dict)


@dataclass(slots=True)
class OfflineResult:
    """What the engine made of one device's data."""

    alarms: list[AlarmEvent] = field(default_factory=list)
    aggregates: list[Aggregate] = field(default_factory=list)
    stale: int = 0


def columns_batch(
    registry: Registry,
    site: str,
    device: str,
    events: OfflineEvents,
    start: int,
    stop: int,
    first_seq: int,
) -> DecodedBatch:
    """Return events ``start:stop`` as a :class:`DecodedBatch` of ``registry``'s indices.

    Arrival times are the events' newest reading times: silence is event time.
    """
    dev = registry.device(site, device)
    known = registry.series_by_device[dev]
    counts = events.counts[start:stop]
    ends = np.cumsum(events.counts)
    lo = int(ends[start - 1]) if start else 0
    hi = int(ends[stop - 1]) if stop else 0
    sensors = events.sensors[lo:hi]
    metrics = events.metrics[lo:hi]
    series = np.empty(hi - lo, np.int32)
    for i, key in enumerate(zip(sensors, metrics, strict=True)):
        index = known.get(key)
        if index is None:
            index = registry.add_series(dev, key[0], key[1])
        series[i] = index
    t_us = events.t_us[lo:hi]
    heads = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    newest = np.maximum.reduceat(t_us, heads) if len(t_us) else np.zeros(0, np.int64)
    out = DecodedBatch()
    n = stop - start
    out.msg_device = [dev] * n
    out.msg_seq = list(range(first_seq, first_seq + n))
    out.msg_outbox = [None] * n
    out.msg_own_times = [True] * n
    out.msg_received_us = newest.tolist()
    out.msg_event_id = list(events.event_ids[start:stop])
    out.msg_traceparent = [None] * n
    out.msg_count = counts.tolist()
    out.series = series
    out.t_us = t_us
    out.value = events.values[lo:hi]
    out.faults = {r - lo: text for r, text in events.faults.items() if lo <= r < hi}
    return out


class OfflineDevice:
    """One device's recorded data through the shard engine, fed in order, in parts."""

    def __init__(
        self, rules: RuleSet, site: str, device: str, *, windows: Sequence[str] = ("1m",)
    ) -> None:
        self.site = site
        self.device = device
        self.config = StreamConfig(
            windows=tuple(parse_window(w) for w in windows),
            allowed_lateness_us=0,
            quiet_us=_FOREVER_US,
            shards=1,
        )
        self.clock = FakeClock(0)
        self.proc = ShardProcessor(
            topics=TopicScheme("sg/v1"),
            config=self.config,
            rules=StaticRules(rules),
            clock=self.clock,
        )
        self._silence = _shortest_deadman(rules)
        self._seq = 0
        self._last_t: int | None = None

    def feed(self, events: OfflineEvents) -> OfflineResult:
        """Take the next events (in time order, after everything fed before)."""
        result = OfflineResult()
        n = len(events.counts)
        if not n:
            return result
        ends = np.cumsum(events.counts)
        heads = np.concatenate(([0], ends[:-1])).astype(np.int64)
        first_t = np.minimum.reduceat(events.t_us, heads)
        last_t = np.maximum.reduceat(events.t_us, heads)
        cuts = set(range(0, n, _CHUNK_EVENTS))
        if self._silence is not None:
            gaps = first_t[1:] - last_t[:-1]
            cuts.update((np.flatnonzero(gaps >= self._silence) + 1).tolist())
        bounds = [*sorted(cuts), n]
        clock = self.clock
        for start, stop in itertools.pairwise(bounds):
            clock.t = max(clock.t, int(first_t[start]))
            self._collect(self.proc.tick(), result)
            clock.t = max(clock.t, int(last_t[start:stop].max()))
            decoded = columns_batch(
                self.proc.registry, self.site, self.device, events, start, stop, self._seq
            )
            self._seq += stop - start
            self._collect(self.proc.process_decoded(decoded), result)
        return result

    def finish(self, end_us: int) -> OfflineResult:
        """Reach the end of the data at ``end_us``: judge silences, close every window."""
        result = OfflineResult()
        self.clock.t = max(self.clock.t, end_us)
        self._collect(self.proc.tick(), result)
        result.aggregates.extend(self._close_all())
        result.stale = self.proc.series_alarms.stale + sum(
            d.stale for d in self.proc.device_rules.detectors.values()
        )
        return result

    def _close_all(self) -> list[Aggregate]:
        windows = self.proc.windows
        closed = windows.close(
            np.full(max(1, self.proc.registry.device_count), _FOREVER_US, np.int64),
            self.proc.registry.series_device(),
        )
        return [] if closed is None else aggregates_of(closed, self.proc.registry.names)

    def active_alarms(self) -> list[tuple[str, str]]:
        """(rule, alarm id) of every alarm still active."""
        found: list[tuple[str, str]] = []
        for machines in (self.proc.series_alarms.all_machines(),):
            found.extend((m.key.rule, m.alarm_id) for m in machines if m.alarm_id)
        for det in self.proc.device_rules.detectors.values():
            found.extend((key.rule, alarm_id) for key, alarm_id in det.active_alarms())
        return found

    def _collect(self, out: ShardOutput, result: OfflineResult) -> None:
        result.alarms.extend(a for a in out.alarms if not isinstance(a, ActiveAlarms))
        for points in out.points:
            if isinstance(points, PointColumns) and points.aggregates is not None:
                result.aggregates.extend(aggregates_of(points.aggregates, points.names))


def run_offline(
    rules: RuleSet,
    site: str,
    device: str,
    events: OfflineEvents,
    *,
    windows: Sequence[str] = ("1m",),
) -> OfflineResult:
    """Run the shard engine over one device's recorded events (see the module docstring).

    Windows still open at the end of the data stay open (as they would live).
    """
    engine = OfflineDevice(rules, site, device, windows=windows)
    result = engine.feed(events)
    result.stale = engine.proc.series_alarms.stale + sum(
        d.stale for d in engine.proc.device_rules.detectors.values()
    )
    return result


def _shortest_deadman(rules: RuleSet) -> int | None:
    # An auto silence is never below its floor: a shorter gap cannot be a silence.
    silences = [r.shortest_us for r in rules.rules if r.kind == "deadman"]
    return min(silences) if silences else None
