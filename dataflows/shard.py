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

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from contract import TopicScheme
from contract.alarms import AlarmEvent
from dataflows.adapters.adapterset import AdapterSet
from dataflows.adapters.config import AdaptersConfig
from dataflows.batch import MessageBatch
from dataflows.columns import (
    AggregateColumns,
    EncodedPoints,
    LateColumns,
    PointColumns,
    PointEncoder,
    ReadingColumns,
)
from dataflows.config import StreamConfig
from dataflows.decode import BatchDecoder, DecodedBatch
from dataflows.dedupe import SequenceSet
from dataflows.device_rules import NEVER, DeviceRules
from dataflows.eventclock import (
    Clock,
    FleetClock,
    SystemClock,
    device_watermark,
    device_watermarks,
)
from dataflows.fresh import Fresh
from dataflows.ingest import IngestLimits
from dataflows.observer import NullObserver, Observer
from dataflows.registry import NONE, Registry
from dataflows.rules import RulesSource, StaticRules
from dataflows.series_alarms import SeriesAlarms
from dataflows.shard_output import (
    Announcement,
    Part,
    ShardOutput,
    SiteReadings,
    concat_parts,
    site_readings,
)
from dataflows.summaries import ActiveSummaries
from dataflows.windows import WindowStore

log = logging.getLogger(__name__)

__all__ = [
    "RulesSource",
    "ShardOutput",
    "ShardProcessor",
    "SiteReadings",
    "StaticRules",
]


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
        adapters: AdaptersConfig | None = None,
        announce: bool = False,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.config = config or StreamConfig()
        self.announce = announce
        """Add an :class:`Announcement` of new series and closed windows to the output."""
        self._announced = 0  # series announced so far: restored ones are announced again
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
        caps = self.config.caps.per_shard(self.config.shards)
        if state is None:
            self.registry = Registry(self.config.dedupe_intervals, caps)
        else:
            self.registry = Registry.restore(
                state["registry"],
                dedupe_intervals=self.config.dedupe_intervals,
                now_us=now,
                caps=caps,
            )
        self.adapters = None if adapters is None else AdapterSet(adapters)
        """This shard's adapters for foreign dialects (their state is per device)."""
        if self.adapters is not None and state is not None and state.get("adapters"):
            self.adapters.restore(state["adapters"])
        self.decoder = BatchDecoder(topics, self.registry, limits, self.adapters)
        self.windows = WindowStore(self.config.windows)
        self.series_alarms = SeriesAlarms(self.ruleset, self.registry)
        self.device_rules = DeviceRules(self.ruleset, self.registry)
        self.summaries = ActiveSummaries(None if state is None else state["active"])
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
        self._batch_keys = set()
        out = ShardOutput()
        alarms = self._reload(now)
        batch = MessageBatch()
        for part in batches:
            batch.extend(part)
        parts: list[Part] = []
        for segment in self.decoder.segments(batch):
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
        self._batch_keys = set()
        out = ShardOutput()
        alarms = self._reload(now)
        parts: list[Part] = []
        self._ingest(decoded, now, alarms, out, parts)
        return self._finish(now, alarms, out, parts)

    def _ingest(
        self,
        decoded: DecodedBatch,
        now: int,
        alarms: list[AlarmEvent],
        out: ShardOutput,
        parts: list[Part],
    ) -> None:
        for rejected in decoded.rejected:
            self.observer.rejected(rejected.reason.value)
            out.deadletters.append(
                rejected.to_event(self.gateway_id, self.decoder.limits.deadletter_keep_bytes)
            )
        out.commands.extend(decoded.commands)
        if decoded.adapter_skipped or decoded.adapter_ignored:
            self.observer.adapted(decoded.adapter_skipped, decoded.adapter_ignored)
        self._grow()
        self._late = None
        readings = self._telemetry(decoded, now, alarms, out)
        parts.append((readings, self._late, decoded.msg_received_us, self._newest))
        for event in decoded.events:
            alarms.extend(self.device_rules.event(event, self.series_alarms))

    def _finish(
        self, now: int, alarms: list[AlarmEvent], out: ShardOutput, parts: list[Part]
    ) -> ShardOutput:
        self._late = None
        aggregates = self.windows.close(
            device_watermarks(self.registry, now, self.config, self.fleet),
            self.registry.series_device(),
        )
        if aggregates is not None:
            alarms.extend(self.device_rules.aggregates(aggregates))
        readings, late, received, newest = concat_parts(parts)
        points = PointColumns(self.registry.names, readings, aggregates, late)
        encoded = self._encode(points, received, newest)
        if encoded is not None:
            out.points.append(encoded)
        # After the points: they were built with the names an eviction replaces.
        alarms.extend(self._maybe_evict(now))
        out.alarms = self.summaries.after(alarms)
        self._commit_seen()
        self._announce(out, aggregates)  # last: a call that fails announces nothing
        return out

    _late: LateColumns | None = None
    _newest: list[int] = []  # noqa: RUF012 - replaced per batch
    folded = False
    """Whether the last :meth:`process` call got as far as folding its readings into
    windows (so a retry after an error must not fold them again)."""
    _fold = True
    _to_commit: list[tuple[SequenceSet, int]] = []  # noqa: RUF012 - replaced per batch
    _batch_keys: set[tuple[int, str | None, int]] = set()  # noqa: RUF012 - replaced per batch

    def _check_seen(self, decoded: DecodedBatch) -> list[bool]:
        """Return which messages are new; they are recorded only once the batch succeeds.

        A message is a duplicate when its (device, outbox, sequence) was seen, unless its
        readings are newer than any the device sent before: a redelivery carries the
        times of its first delivery, so such a message is new data from a device whose
        sequence went back (an outbox recreated by an agent that sends no outbox id). That
        is counted and logged as a reset, never dropped. (Only for messages that carry
        their own reading times: an adapter dates readings without a time by their
        arrival, so its redeliveries look newer.) Jumps forward are counted as
        sequence gaps (missing messages, which a backlog may still fill).

        A batch that fails part-way is retried message by message, and its messages
        must not look like duplicates of themselves then.
        """
        reg = self.registry
        # Shared by every segment of the call: a batch split at a status message (a
        # device's birth between an event and its re-send) must still see the first.
        batch = self._batch_keys
        keep = []
        starts: list[int] | None = None
        own_times = decoded.msg_own_times
        for k, (dev, seq, outbox) in enumerate(
            zip(decoded.msg_device, decoded.msg_seq, decoded.msg_outbox, strict=True)
        ):
            seen, new_outbox = reg.seen_of(dev, outbox)
            if new_outbox:
                self._sequence_reset(dev, seq, f"new outbox {outbox!r}")
            key = (dev, outbox, seq)
            new = seq not in seen and key not in batch
            if not new and key not in batch and own_times[k]:
                if starts is None:
                    starts = np.concatenate(([0], np.cumsum(decoded.msg_count))).tolist()
                newest = _newest(decoded, starts[k], starts[k + 1])
                if newest > reg.newest_seen_us[dev]:
                    seen = reg.reset_sequences(dev)
                    self._sequence_reset(dev, seq, "sequence seen before, readings newer")
                    new = True
            if new:
                high = reg.high_seq[dev]
                if high >= 0 and seq > high + 1:
                    self.observer.sequence_gap(reg.sites[dev], reg.devices[dev], seq - high - 1)
                if seq > high:
                    reg.high_seq[dev] = seq
                batch.add(key)
                self._to_commit.append((seen, seq))
            keep.append(new)
        return keep

    def _sequence_reset(self, dev: int, seq: int, why: str) -> None:
        reg = self.registry
        self.observer.sequence_reset(reg.sites[dev], reg.devices[dev])
        log.warning(
            "device %s/%s: sequence reset at %d (%s); its messages count as new data",
            reg.sites[dev],
            reg.devices[dev],
            seq,
            why,
        )

    def _commit_seen(self) -> None:
        for seen, seq in self._to_commit:
            seen.add(seq)
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
        keep = self._check_seen(decoded)
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
        newest_seen = reg.newest_seen_us
        for dev, new in zip(devices, newest, strict=True):
            wm = device_watermark(reg, dev, now, cfg, fleet)
            wm_msg.append(wm)
            if new > newest_seen[dev]:
                newest_seen[dev] = new
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
        fresh = Fresh(
            devices=devices,
            seqs=seqs,
            event_ids=event_ids,
            traceparents=traces,
            received_us=decoded.msg_received_us,
            counts=counts,
            series=series,
            t_us=t_us,
            value=value,
            faults=faults,
        )
        alarms.extend(self.series_alarms.process(fresh))
        alarms.extend(self.device_rules.telemetry(fresh))
        if self.device_rules.site_patterns:
            out.site_readings.extend(site_readings(fresh, self.registry))
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
            alarms.extend(self.device_rules.aggregates(aggregates))
            encoded = self._encode(PointColumns(self.registry.names, aggregates=aggregates), [], [])
            if encoded is not None:
                out.points.append(encoded)
        self._announce(out, aggregates)
        alarms.extend(self.device_rules.tick(now))
        alarms.extend(self._maybe_evict(now))
        out.alarms = self.summaries.after(alarms)
        return out

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
        due = self.device_rules.due()
        if due is not None and len(due):
            first = int(due.min())
            if first != NEVER:
                # A deadman that is due but waits out its rule's ``for`` stays due:
                # look again ten times a second rather than on every worker loop.
                wakes.append(max(first, now + 100_000))
        return min(wakes) if wakes else None

    # -- eviction -----------------------------------------------------------------

    _next_eviction_us: int | None = None

    def _maybe_evict(self, now: int) -> list[AlarmEvent]:
        idle = self.config.evict_idle_us
        if idle is None:
            return []
        every = min(idle // 10, 3_600_000_000)
        if self._next_eviction_us is None:
            self._next_eviction_us = now + every
        if now < self._next_eviction_us:
            return []
        self._next_eviction_us = now + every
        return self.evict_idle(now)

    def evict_idle(self, now: int) -> list[AlarmEvent]:
        """Forget devices silent for ``evict_idle_us``; return the alarms that clears.

        A forgotten device's alarms (its deadman, its last will, a series alarm that
        was up when it went silent) are cleared with that reason: nothing keeps them
        true any more. A device stays while one of its windows is open (it closes
        once the fleet's clock passes it). Evicting after the ingest's ``max_past``
        (the default) keeps dedupe exact: a redelivery of a forgotten device's old
        message is refused as out of range before dedupe would be asked.
        """
        idle = self.config.evict_idle_us
        reg = self.registry
        if idle is None or not reg.device_count:
            return []
        last = np.asarray(reg.last_arrival_us, np.int64)
        keep = (last >= now - idle) | (last == NONE)
        series_device = reg.series_device().astype(np.int64)
        open_series = self.windows.series_open()
        if len(open_series):
            keep[series_device[open_series]] = True
        if keep.all():
            return []
        gone = np.flatnonzero(~keep)
        why = f"device forgotten after {_span_s(idle)} of silence"
        events = self.series_alarms.forget(np.flatnonzero(~keep[series_device]), now, why)
        events += self.device_rules.forget(gone, now, why)
        names = [f"{reg.sites[d]}/{reg.devices[d]}" for d in gone.tolist()]
        n_series = len(reg.names)
        dev_map, series_map = reg.compact(keep)
        self.windows.remap_series(series_map)
        self.series_alarms.compact(series_map)
        self.device_rules.compact(dev_map)
        self.observer.evicted(len(names), n_series - len(reg.names))
        log.info(
            "evicted %d idle device(s) and %d series (%s): %s%s",
            len(names),
            n_series - len(reg.names),
            why,
            ", ".join(names[:5]),
            "..." if len(names) > 5 else "",
        )
        return events

    # -- helpers ------------------------------------------------------------------

    def _grow(self) -> None:
        """Extend per-series and per-device tables to what the registry now holds."""
        self.device_rules.grow()
        self.series_alarms.match_new_series()

    def _announce(self, out: ShardOutput, aggregates: AggregateColumns | None) -> None:
        if not self.announce:
            return
        new = range(self._announced, self.registry.series_count)
        closed = aggregates if aggregates is not None and len(aggregates) else None
        if new or closed is not None:
            out.announcements.append(Announcement(self.registry.names, new, closed))
            self._announced = new.stop

    def _reload(self, now: int) -> list[AlarmEvent]:
        alarms, self._pending = self._pending, []
        version, ruleset = self.rules_source.current()
        if version == self.version:
            return alarms
        self.version, self.ruleset = version, ruleset
        alarms.extend(self.series_alarms.reload(ruleset, now))
        alarms.extend(self.device_rules.reload(ruleset, now))
        return alarms

    def _encode(
        self, points: PointColumns, received_us: list[int], newest_us: list[int]
    ) -> EncodedPoints | PointColumns | None:
        if points.empty:
            return None
        if self.encoder is None:
            return points
        r, a, late = points.readings, points.aggregates, points.late
        raw, aggregates = self.encoder.encode_parts(points)
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

    # -- snapshots ----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Return the shard's whole state as plain data (for Bytewax recovery)."""
        return {
            "registry": self.registry.snapshot(),
            "windows": self.windows.snapshot(),
            "series_alarms": self.series_alarms.snapshot(),
            "detectors": self.device_rules.snapshot(),
            "active": self.summaries.snapshot(),
            "adapters": None if self.adapters is None else self.adapters.snapshot(),
        }

    def _restore(self, state: dict[str, Any], now: int) -> None:
        try:
            self.windows.restore(state["windows"])
        except ValueError as exc:
            # The window settings changed since the snapshot: its open windows cannot
            # continue under the new specs. Everything else (dedupe, alarms) can.
            log.warning("%s: the open windows of the snapshot are dropped", exc)
        self._grow()
        self._pending.extend(self.series_alarms.restore(state["series_alarms"], now))
        self.device_rules.restore(state["detectors"], now)


def _newest(decoded: DecodedBatch, start: int, end: int) -> int:
    """Newest valued reading time of the rows ``start:end`` (NONE when none has a value)."""
    t = decoded.t_us[start:end][~np.isnan(decoded.value[start:end])]
    return int(t.max()) if len(t) else NONE


def _span_s(us: int) -> str:
    """Say a duration in the largest whole unit (``32 days``, ``6 h``, ``90 s``)."""
    seconds = us // 1_000_000
    for unit, size in (("days", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
