"""The state and logic of one shard: decode, dedupe, event time, windows, alarms.

:class:`ShardProcessor` is plain Python over arrays, with no Bytewax import; the flow
keys batches of raw messages by shard and calls it from a ``stateful_batch`` step. One
call takes every message the shard received since the last one and returns a
:class:`ShardOutput`: the points to store (already encoded when an encoder is given),
alarm events and active-alarm summaries, dead letters, and, when site-wide pattern
rules exist, the telemetry those need.

The order of work on a batch::

    raw messages ─▶ decode (fast columns | pydantic arbiter) ─▶ dead letters
                 ─▶ dedupe by (device, sequence), per message
                 ─▶ event clocks, per message: watermark before it, late readings split
                 ─▶ window folds (arrays)          ─▶ close what the watermarks passed
                 ─▶ series rules (detector banks)  ─▶ alarm machines, only where needed
                 ─▶ device rules (deadman, offline, patterns), per message or event
                 ─▶ status and commands, per event

Within a batch, status and command messages are handled after its telemetry, and
telemetry that needed the pydantic path after the rest; batches are tens of
milliseconds apart, so this reorders nothing a person could see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from contract import AlarmData, AlarmState, DeadLetterEvent, TopicScheme
from contract.alarms import AlarmEvent
from dataflows.alarms import Cause
from dataflows.batch import MessageBatch
from dataflows.columns import (
    EncodedPoints,
    LateColumns,
    PointColumns,
    PointEncoder,
    ReadingColumns,
)
from dataflows.config import StreamConfig
from dataflows.decode import BatchDecoder, DecodedBatch
from dataflows.detection import DeviceDetector
from dataflows.detectors import DeadmanDetector
from dataflows.eventclock import (
    Clock,
    FleetClock,
    SystemClock,
    device_watermark,
    device_watermarks,
)
from dataflows.ingest import CommandIn, IngestLimits, StatusIn
from dataflows.observer import NullObserver, Observer
from dataflows.registry import NONE, Registry
from dataflows.rules import RuleSet, default_rules
from dataflows.series_alarms import SeriesAlarms, cause_table
from dataflows.windows import WindowStore, aggregates_of

__all__ = [
    "ActiveAlarms",
    "RulesSource",
    "ShardOutput",
    "ShardProcessor",
    "SiteReadings",
    "StaticRules",
]

_NEVER = np.iinfo(np.int64).max

_Part = tuple["ReadingColumns | None", "LateColumns | None", list[int], list[int]]
"""What one segment of a batch yields: readings, late readings, arrivals, newest times."""


@dataclass(frozen=True, slots=True)
class ActiveAlarms:
    """The active (raised or acknowledged, not cleared) alarms of one device, after a change.

    The alarm sink publishes it retained, so a dashboard that connects late sees the
    current state without replaying the event history.
    """

    site: str
    device: str
    alarms: tuple[AlarmData, ...]


@dataclass(frozen=True, slots=True)
class SiteReadings:
    """One fresh telemetry event's readings, for the site-wide pattern step (rare)."""

    site: str
    device: str
    event_id: str
    traceparent: str | None
    readings: tuple[tuple[str, str, float, int], ...]
    """(sensor, metric, value, time in µs) of each reading with a value, in time order."""


@dataclass(slots=True)
class ShardOutput:
    """What one call of the shard produced."""

    points: list[EncodedPoints | PointColumns] = field(default_factory=list)
    alarms: list[AlarmEvent | ActiveAlarms] = field(default_factory=list)
    deadletters: list[DeadLetterEvent] = field(default_factory=list)
    site_readings: list[SiteReadings] = field(default_factory=list)


class RulesSource(Protocol):
    """Where the shard gets its rules; ``version`` changes when they do."""

    def current(self) -> tuple[int, RuleSet]:
        """Return (version, rules); cheap, called on every batch and timer."""


class StaticRules:
    """Rules that never change (tests, replays)."""

    def __init__(self, rules: RuleSet | None = None) -> None:
        self._rules = rules or default_rules()

    def current(self) -> tuple[int, RuleSet]:
        """Return version 0 and the rules."""
        return 0, self._rules


class ShardProcessor:
    """Everything the gateway keeps for the devices of one shard (see the module docstring)."""

    def __init__(
        self,
        *,
        topics: TopicScheme,
        config: StreamConfig | None = None,
        rules: RulesSource | None = None,
        encoder: PointEncoder | None = None,
        limits: IngestLimits | None = None,
        clock: Clock | None = None,
        fleet: FleetClock | None = None,
        observer: Observer | None = None,
        gateway_id: str = "gateway",
        include_seq: bool = False,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.config = config or StreamConfig()
        self.rules_source = rules or StaticRules()
        self.encoder = encoder
        self.clock = clock or SystemClock()
        self.fleet = fleet or FleetClock(self.config.quiet_us)
        self.observer = observer or NullObserver()
        self.gateway_id = gateway_id
        self.topics = topics
        self.limits = limits
        self.include_seq = include_seq
        self.version, self.ruleset = self.rules_source.current()
        now = self.clock.now_us()
        if state is None:
            self.registry = Registry(self.config.dedupe_intervals)
        else:
            self.registry = Registry.restore(
                state["registry"], dedupe_intervals=self.config.dedupe_intervals, now_us=now
            )
        self.decoder = BatchDecoder(topics, self.registry, limits)
        self.windows = WindowStore(self.config.windows)
        self.series_alarms = SeriesAlarms(self.ruleset, self.registry)
        self.detectors: dict[int, DeviceDetector] = {}
        self.active: dict[int, dict[str, dict[str, Any]]] = {}
        """Device -> alarm id -> AlarmData as JSON-able data, for the retained summary."""
        self._wants: list[bool] = []
        """Per series: whether its readings also feed a per-event device rule."""
        self._deadman_silence: list[int] = []
        """Per device: the shortest deadman silence watching it (0: none)."""
        self._deadman_armed: list[bool] = []
        self._pending: list[AlarmEvent] = []
        if state is not None:
            self._restore(state, now)

    # -- batches ------------------------------------------------------------------

    def process(self, batches: Iterable[MessageBatch], *, fold: bool = True) -> ShardOutput:
        """Take every message the shard received since the last call.

        ``fold=False`` stores and checks the readings but leaves the windows alone (a
        retry of a batch whose readings were already folded: see :attr:`folded`).
        """
        now = self.clock.now_us()
        self.folded = False
        self._fold = fold
        self._to_commit = []
        out = ShardOutput()
        alarms = self._reload(now)
        batch = MessageBatch()
        for part in batches:
            batch.extend(part)
        parts: list[_Part] = []
        for segment in self._segments(batch):
            self._ingest(self.decoder.decode(segment), now, alarms, out, parts)
        return self._finish(now, alarms, out, parts)

    def process_decoded(self, decoded: DecodedBatch) -> ShardOutput:
        """Take telemetry that is already columns (offline detection, replay).

        Build ``decoded`` against this shard's :attr:`registry`; arrival times
        (``msg_received_us``) are what deadman rules count silence on.
        """
        now = self.clock.now_us()
        self.folded = False
        self._fold = True
        self._to_commit = []
        out = ShardOutput()
        alarms = self._reload(now)
        parts: list[_Part] = []
        self._ingest(decoded, now, alarms, out, parts)
        return self._finish(now, alarms, out, parts)

    def _ingest(
        self,
        decoded: DecodedBatch,
        now: int,
        alarms: list[AlarmEvent],
        out: ShardOutput,
        parts: list[_Part],
    ) -> None:
        for rejected in decoded.rejected:
            self.observer.rejected(rejected.reason.value)
            out.deadletters.append(rejected.to_event(self.gateway_id))
        self._grow()
        self._late = None
        readings = self._telemetry(decoded, now, alarms, out)
        parts.append((readings, self._late, decoded.msg_received_us, self._newest))
        for event in decoded.events:
            alarms.extend(self._event(event))

    def _finish(
        self, now: int, alarms: list[AlarmEvent], out: ShardOutput, parts: list[_Part]
    ) -> ShardOutput:
        self._late = None
        aggregates = self.windows.close(
            device_watermarks(self.registry, now, self.config, self.fleet),
            self.registry.series_device(),
        )
        if aggregates is not None:
            alarms.extend(self._aggregate_rules(aggregates))
        readings, late, received, newest = _concat(parts)
        points = PointColumns(self.registry.names, readings, aggregates, late)
        encoded = self._encode(points, received, newest)
        if encoded is not None:
            out.points.append(encoded)
        out.alarms = self._with_summaries(alarms)
        self._commit_seen()
        return out

    def _segments(self, batch: MessageBatch) -> list[MessageBatch]:
        """Split a batch at status and command messages, which must keep their place.

        An acknowledgement that arrived before the reading that clears its alarm must
        be applied before it: runs of telemetry are decoded together, and each status
        or command message is handled on its own, in order.
        """
        kinds = [self.decoder.is_event(topic) for topic in batch.topics]
        if not any(kinds):
            return [batch]
        segments: list[MessageBatch] = []
        run = MessageBatch()
        for is_event, topic, payload, received in zip(
            kinds, batch.topics, batch.payloads, batch.received_us, strict=True
        ):
            if is_event:
                if len(run):
                    segments.append(run)
                    run = MessageBatch()
                segments.append(MessageBatch([topic], [payload], [received]))
            else:
                run.append(topic, payload, received)
        if len(run):
            segments.append(run)
        return segments

    _late: LateColumns | None = None
    _newest: list[int] = []  # noqa: RUF012 - replaced per batch
    folded = False
    """Whether the last :meth:`process` call got as far as folding its readings into
    windows (so a retry after an error must not fold them again)."""
    _fold = True
    _to_commit: list[tuple[int, int]] = []  # noqa: RUF012 - replaced per batch

    def _check_seen(self, devices: list[int], seqs: list[int]) -> list[bool]:
        """Return which messages are new; they are recorded only once the batch succeeds.

        A batch that fails part-way is retried message by message, and its messages
        must not look like duplicates of themselves then.
        """
        seen = self.registry.seen
        batch: set[tuple[int, int]] = set()
        keep = []
        for dev, seq in zip(devices, seqs, strict=True):
            new = seq not in seen[dev] and (dev, seq) not in batch
            if new:
                batch.add((dev, seq))
                self._to_commit.append((dev, seq))
            keep.append(new)
        return keep

    def _commit_seen(self) -> None:
        seen = self.registry.seen
        for dev, seq in self._to_commit:
            seen[dev].add(seq)
        self._to_commit = []

    def _telemetry(
        self, decoded: DecodedBatch, now: int, alarms: list[AlarmEvent], out: ShardOutput
    ) -> ReadingColumns | None:
        """Dedupe, split late readings, fold windows and run the rules over telemetry."""
        reg = self.registry
        n_msgs = decoded.messages
        self._newest = []
        if not n_msgs:
            return None
        counts = np.asarray(decoded.msg_count, dtype=np.int64)
        keep = self._check_seen(decoded.msg_device, decoded.msg_seq)
        series, t_us, value = decoded.series, decoded.t_us, decoded.value
        faults = decoded.faults
        msg_index = np.arange(n_msgs)
        if not all(keep):
            keep_arr = np.asarray(keep, np.bool_)
            self.observer.duplicate(int(counts[~keep_arr].sum()))
            rows = np.repeat(keep_arr, counts)
            series, t_us, value = series[rows], t_us[rows], value[rows]
            if faults:
                new_row = np.cumsum(rows) - 1
                faults = {int(new_row[r]): f for r, f in faults.items() if rows[r]}
            msg_index = np.flatnonzero(keep_arr)
            counts = counts[keep_arr]
            decoded.msg_received_us = [decoded.msg_received_us[i] for i in msg_index.tolist()]
        if not len(msg_index):
            return None
        devices = [decoded.msg_device[i] for i in msg_index.tolist()]
        seqs = [decoded.msg_seq[i] for i in msg_index.tolist()]
        event_ids = [decoded.msg_event_id[i] for i in msg_index.tolist()]
        traces = [decoded.msg_traceparent[i] for i in msg_index.tolist()]
        self.observer.message_in(int(counts.sum()), len(devices))
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        is_value = ~np.isnan(value)
        with np.errstate(invalid="ignore"):
            t_valued = np.where(is_value, t_us, NONE)
        newest = np.maximum.reduceat(t_valued, starts).tolist()
        self._newest = newest
        # The event clock moves message by message: each message is judged against
        # its device's watermark as it was before it.
        wm_msg = []
        cfg, fleet = self.config, self.fleet
        for dev, new in zip(devices, newest, strict=True):
            wm = device_watermark(reg, dev, now, cfg, fleet)
            wm_msg.append(wm)
            if new != NONE and new >= wm:
                if new > reg.max_event_us[dev]:
                    reg.max_event_us[dev] = new
                fleet.observe(new, now)
        for dev in set(devices):
            reg.last_arrival_us[dev] = now
        msg_of_row = np.repeat(np.arange(len(devices)), counts)
        late = is_value & (t_us < np.asarray(wm_msg, np.int64)[msg_of_row])
        if self._fold:
            fold = is_value & ~late
            self.windows.add(series[fold], t_us[fold], value[fold])
            self.folded = True
        if late.any():
            self._late_rows(late, series, t_us, value, seqs, event_ids, wm_msg, msg_of_row)
        cause_of = cause_table(event_ids, traces, msg_of_row, reg)
        alarms.extend(self.series_alarms.process(series, t_us, value, cause_of, faults))
        alarms.extend(
            self._device_rules(
                devices,
                decoded,
                msg_index,
                event_ids,
                traces,
                series,
                t_us,
                value,
                faults,
                msg_of_row,
            )
        )
        if self._site_patterns:
            out.site_readings.extend(
                self._site_readings(devices, event_ids, traces, series, t_us, value, counts)
            )
        seq_rows = np.repeat(np.asarray(seqs, np.int64), counts)
        return ReadingColumns(series, t_us, value, seq_rows, faults or None)

    def _late_rows(
        self,
        late: npt.NDArray[np.bool_],
        series: npt.NDArray[np.int32],
        t_us: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        seqs: list[int],
        event_ids: list[str],
        wm_msg: list[int],
        msg_of_row: npt.NDArray[np.int64],
    ) -> None:
        rows = np.flatnonzero(late)
        msgs = msg_of_row[rows]
        self.observer.late(len(rows))
        self._late = LateColumns(
            series=series[rows],
            t_us=t_us[rows],
            value=value[rows],
            seq=np.asarray(seqs, np.int64)[msgs],
            watermark_us=np.asarray(wm_msg, np.int64)[msgs],
            event_id=[event_ids[m] for m in msgs.tolist()],
        )

    def _device_rules(
        self,
        devices: list[int],
        decoded: Any,
        msg_index: npt.NDArray[np.int64],
        event_ids: list[str],
        traces: list[str | None],
        series: npt.NDArray[np.int32],
        t_us: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        faults: dict[int, str],
        msg_of_row: npt.NDArray[np.int64],
    ) -> list[AlarmEvent]:
        """Deadman, offline and per-event series rules (patterns, series deadman)."""
        out: list[AlarmEvent] = []
        wants = np.asarray(self._wants, np.bool_) if self._per_event_series_rules else None
        if wants is not None and len(series) and wants.any():
            rows = np.flatnonzero(wants[series])
            rows = rows[np.lexsort((t_us[rows], msg_of_row[rows]))]
            names = self.registry.names
            for row in rows.tolist():
                s = int(series[row])
                m = int(msg_of_row[row])
                det = self._detector(devices[m])
                v = float(value[row])
                cause = Cause(event_ids[m], f"{names.sensor[s]}/{names.metric[s]}", traces[m])
                out.extend(
                    det.reading(
                        names.sensor[s],
                        names.metric[s],
                        None if v != v else v,
                        faults.get(row),
                        int(t_us[row]),
                        cause,
                    )
                )
        received = decoded.msg_received_us
        for k, dev in enumerate(devices):
            if not self._needs_detector(dev):
                continue
            det = self._detector(dev)
            out.extend(det.alive(received[k], Cause(event_ids[k], None, traces[k])))
            self._deadman_armed[dev] = det.deadman_armed()
        return out

    def _event(self, event: StatusIn | CommandIn) -> list[AlarmEvent]:
        """Handle a status or command message (per event)."""
        if isinstance(event, StatusIn):
            data = event.event.data
            dev = self.registry.device(data.site, data.device)
            self._grow()
            det = self._detector(dev)
            events = det.process([event.arrival_event()])
            self._deadman_armed[dev] = det.deadman_armed()
            return events
        cmd = event.command.data
        dev = self.registry.device(cmd.site, cmd.device)
        self._grow()
        acked = self.series_alarms.acknowledge(cmd.alarm_id, cmd.by, event.command.time)
        if not acked:
            acked = self._detector(dev).acknowledge(cmd.alarm_id, cmd.by, event.command.time)
        return acked

    def _aggregate_rules(self, aggregates: Any) -> list[AlarmEvent]:
        if not any(r.kind == "aggregate" for r in self.ruleset.rules):
            return []
        out: list[AlarmEvent] = []
        for agg in aggregates_of(aggregates, self.registry.names):
            dev = self.registry.find_device(agg.site, agg.device)
            if dev is not None:
                out.extend(self._detector(dev).on_aggregate(agg))
        return out

    # -- timers -------------------------------------------------------------------

    def tick(self) -> ShardOutput:
        """Close windows the watermarks passed and run time-driven rules (deadman)."""
        now = self.clock.now_us()
        out = ShardOutput()
        alarms = self._reload(now)
        aggregates = self.windows.close(
            device_watermarks(self.registry, now, self.config, self.fleet),
            self.registry.series_device(),
        )
        if aggregates is not None:
            alarms.extend(self._aggregate_rules(aggregates))
            encoded = self._encode(PointColumns(self.registry.names, aggregates=aggregates), [], [])
            if encoded is not None:
                out.points.append(encoded)
        due = self._deadman_due()
        if due is not None and len(due):
            for dev in np.flatnonzero(due <= now).tolist():
                det = self._detector(dev)
                alarms.extend(det.tick(now))
                self._deadman_armed[dev] = det.deadman_armed()
        out.alarms = self._with_summaries(alarms)
        return out

    def _deadman_due(self) -> npt.NDArray[np.int64] | None:
        if not any(self._deadman_silence):
            return None
        silence = np.asarray(self._deadman_silence, np.int64)
        last = np.asarray(self.registry.last_arrival_us, np.int64)
        armed = np.asarray(self._deadman_armed, np.bool_) & (silence > 0) & (last != NONE)
        return np.where(armed, last + silence, _NEVER)

    def next_wake_us(self) -> int | None:
        """When :meth:`tick` next has something to do (None: nothing)."""
        now = self.clock.now_us()
        wakes = []
        end = self.windows.next_end_us()
        if end is not None:
            cfg = self.config
            fleet = self.fleet.time_us(now)
            fleet = now if fleet is None else fleet
            wait = end + cfg.allowed_lateness_us + cfg.quiet_us - fleet
            wakes.append(now + min(max(wait, 1_000_000), 60_000_000))
        due = self._deadman_due()
        if due is not None and len(due):
            first = int(due.min())
            if first != _NEVER:
                # A deadman that is due but waits out its rule's ``for`` stays due:
                # look again ten times a second rather than on every worker loop.
                wakes.append(max(first, now + 100_000))
        return min(wakes) if wakes else None

    # -- helpers ------------------------------------------------------------------

    @property
    def _site_patterns(self) -> bool:
        return any(r.kind == "pattern" and r.scope == "site" for r in self.ruleset.rules)

    def _site_readings(
        self,
        devices: list[int],
        event_ids: list[str],
        traces: list[str | None],
        series: npt.NDArray[np.int32],
        t_us: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        counts: npt.NDArray[np.int64],
    ) -> list[SiteReadings]:
        out = []
        names = self.registry.names
        pos = 0
        for k, n in enumerate(counts.tolist()):
            rows = [
                (names.sensor[s], names.metric[s], v, t)
                for s, t, v in zip(
                    series[pos : pos + n].tolist(),
                    t_us[pos : pos + n].tolist(),
                    value[pos : pos + n].tolist(),
                    strict=True,
                )
                if v == v
            ]
            rows.sort(key=lambda r: r[3])
            dev = devices[k]
            out.append(
                SiteReadings(
                    self.registry.sites[dev],
                    self.registry.devices[dev],
                    event_ids[k],
                    traces[k],
                    tuple(rows),
                )
            )
            pos += n
        return out

    def _grow(self) -> None:
        """Extend per-series and per-device tables to what the registry now holds."""
        reg = self.registry
        if self._per_event_series_rules:
            for s in range(len(self._wants), reg.series_count):
                site, device, sensor, metric = reg.series_key(s)
                dev = reg.device_index[f"{site}/{device}"]
                self._wants.append(
                    self._needs_detector(dev) and self._detector(dev).wants_readings(sensor, metric)
                )
        else:  # the common case: no rule needs readings one by one
            self._wants.extend([False] * (reg.series_count - len(self._wants)))
        rules = self.ruleset
        for dev in range(len(self._deadman_silence), reg.device_count):
            silences = [
                r.silence
                for r in rules.for_device(reg.sites[dev], reg.devices[dev])
                if r.kind == "deadman"
            ]
            self._deadman_silence.append(min(silences) if silences else 0)
            self._deadman_armed.append(bool(silences))
        self.series_alarms.match_new_series()

    @property
    def _per_event_series_rules(self) -> bool:
        """Whether any rule takes readings one by one (series deadman, device patterns)."""
        return any(
            (r.kind == "deadman" and r.scope == "series")
            or (r.kind == "pattern" and r.scope == "device")
            for r in self.ruleset.rules
        )

    def _needs_detector(self, dev: int) -> bool:
        reg = self.registry
        return bool(self.ruleset.for_device(reg.sites[dev], reg.devices[dev])) or any(
            r.kind == "deadman" and r.scope == "series" for r in self.ruleset.rules
        )

    def _detector(self, dev: int) -> DeviceDetector:
        det = self.detectors.get(dev)
        if det is None:
            reg = self.registry
            det = self.detectors[dev] = DeviceDetector(
                reg.sites[dev], reg.devices[dev], self.ruleset, series_banks=True
            )
        return det

    def _reload(self, now: int) -> list[AlarmEvent]:
        alarms, self._pending = self._pending, []
        version, ruleset = self.rules_source.current()
        if version == self.version:
            return alarms
        self.version, self.ruleset = version, ruleset
        alarms.extend(self.series_alarms.reload(ruleset, now))
        for det in self.detectors.values():
            alarms.extend(det.reload(ruleset, now))
        # Matching changed: recompute which series feed per-event rules and deadman.
        self._wants, self._deadman_silence, self._deadman_armed = [], [], []
        self._grow()
        for dev, det in self.detectors.items():
            self._deadman_armed[dev] = det.deadman_armed()
        return alarms

    def _encode(
        self, points: PointColumns, received_us: list[int], newest_us: list[int]
    ) -> EncodedPoints | PointColumns | None:
        if points.empty:
            return None
        if self.encoder is None:
            return points
        r, a, late = points.readings, points.aggregates, points.late
        return EncodedPoints(
            body=self.encoder.encode(points),
            lines=(len(r) if r else 0) + (len(a) if a else 0) + (len(late) if late else 0),
            readings=len(r) if r else 0,
            aggregates=len(a) if a else 0,
            late=len(late) if late else 0,
            received_us=np.asarray(received_us, np.int64),
            newest_us=np.asarray([t for t in newest_us if t != NONE], np.int64),
        )

    def _with_summaries(self, alarms: list[AlarmEvent]) -> list[AlarmEvent | ActiveAlarms]:
        """Return ``alarms`` followed by the new summary of each device they changed."""
        if not alarms:
            return []
        changed: dict[int, tuple[str, str]] = {}
        for event in alarms:
            data = event.data
            dev = self.registry.device(data.site, data.device) if data.device != "_site" else -1
            active = self.active.setdefault(dev, {})
            if data.state is AlarmState.CLEARED:
                active.pop(data.alarm_id, None)
            else:
                active[data.alarm_id] = data.model_dump(mode="json")
            changed[dev] = (data.site, data.device)
        out: list[AlarmEvent | ActiveAlarms] = list(alarms)
        for dev, (site, device) in changed.items():
            summary = tuple(AlarmData.model_validate(d) for d in self.active[dev].values())
            out.append(ActiveAlarms(site, device, summary))
        return out

    # -- snapshots ----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Return the shard's whole state as plain data (for Bytewax recovery)."""
        return {
            "registry": self.registry.snapshot(),
            "windows": self.windows.snapshot(),
            "series_alarms": self.series_alarms.snapshot(),
            "detectors": {dev: det.snapshot() for dev, det in self.detectors.items()},
            "active": {dev: dict(a) for dev, a in self.active.items() if a},
        }

    def _restore(self, state: dict[str, Any], now: int) -> None:
        self.windows.restore(state["windows"])
        self._grow()
        self._pending.extend(self.series_alarms.restore(state["series_alarms"], now))
        for dev, doc in state["detectors"].items():
            det = DeviceDetector(
                doc["site"], doc["device"], self.ruleset, state=doc, series_banks=True
            )
            self.detectors[int(dev)] = det
            # Silence is measured on the arrival clock and the gateway was down: it
            # counts from the restart, or every device would raise a deadman alarm at
            # once after a downtime longer than its silence.
            for slot in det.slots.values():
                detector = slot.detector
                if (
                    isinstance(detector, DeadmanDetector)
                    and not slot.machine.active
                    and detector.last_us is not None
                    and detector.last_us < now
                ):
                    detector.last_us = now
            self._deadman_armed[int(dev)] = det.deadman_armed()
        self.active = {int(dev): dict(a) for dev, a in state["active"].items()}


def _concat(parts: list[_Part]) -> _Part:
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
