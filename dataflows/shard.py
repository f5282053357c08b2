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

from contract import TopicScheme
from contract.alarms import AlarmEvent
from dataflows.adapters.adapterset import AdapterSet
from dataflows.adapters.config import AdaptersConfig
from dataflows.batch import MessageBatch
from dataflows.columns import (
    AggregateColumns,
    LateColumns,
    PointColumns,
    PointEncoder,
    ReadingColumns,
)
from dataflows.config import StreamConfig
from dataflows.decode import BatchDecoder, DecodedBatch
from dataflows.device_rules import NEVER, DeviceRules
from dataflows.eventclock import (
    Clock,
    FleetClock,
    SystemClock,
    device_watermarks,
    observe_messages,
)
from dataflows.ingest import IngestLimits
from dataflows.observer import NullObserver, Observer
from dataflows.registry import NONE, Registry
from dataflows.rules import RulesSource, StaticRules
from dataflows.series_alarms import SeriesAlarms
from dataflows.shard_evict import Evictor
from dataflows.shard_output import (
    Announcement,
    Part,
    ShardOutput,
    SiteReadings,
    concat_parts,
    encode_points,
    late_columns,
    site_readings,
)
from dataflows.shard_seen import SeenCheck
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
        self.registry = _registry(self.config, state, now)
        self.adapters = None if adapters is None else AdapterSet(adapters)
        """This shard's adapters for foreign dialects (their state is per device)."""
        if self.adapters is not None and state is not None and state.get("adapters"):
            self.adapters.restore(state["adapters"])
        self.decoder = BatchDecoder(topics, self.registry, limits, self.adapters)
        self.windows = WindowStore(self.config.windows)
        self.series_alarms = SeriesAlarms(self.ruleset, self.registry)
        self.device_rules = DeviceRules(self.ruleset, self.registry)
        self.summaries = ActiveSummaries(None if state is None else state["active"])
        self.seen = SeenCheck(self.registry, self.observer)
        self.evictor = Evictor(
            self.config,
            self.registry,
            self.windows,
            self.series_alarms,
            self.device_rules,
            self.observer,
        )
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
        self.seen.begin()
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
        self.seen.begin()
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
        encoded = encode_points(self.encoder, points, received, newest)
        if encoded is not None:
            out.points.append(encoded)
        # After the points: they were built with the names an eviction replaces.
        alarms.extend(self.evictor.maybe(now))
        out.alarms = self.summaries.after(alarms)
        self.seen.commit()
        self._announce(out, aggregates)  # last: a call that fails announces nothing
        return out

    _late: LateColumns | None = None
    _newest: list[int] = []  # noqa: RUF012 - replaced per batch
    folded = False
    """Whether the last :meth:`process` call got as far as folding its readings into
    windows (so a retry after an error must not fold them again)."""
    _fold = True

    def _telemetry(
        self, decoded: DecodedBatch, now: int, alarms: list[AlarmEvent], out: ShardOutput
    ) -> ReadingColumns | None:
        """Dedupe, split late readings, fold windows and run the rules over telemetry."""
        self._newest = []
        fresh = self.seen.fresh(decoded)
        if fresh is None:
            return None
        series, t_us, value, counts = fresh.series, fresh.t_us, fresh.value, fresh.counts
        self.observer.message_in(int(counts.sum()), len(fresh.devices))
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        is_value = ~np.isnan(value)
        with np.errstate(invalid="ignore"):
            t_valued = np.where(is_value, t_us, NONE)
        newest = np.maximum.reduceat(t_valued, starts).tolist()
        self._newest = newest
        wm_msg = observe_messages(
            self.registry, fresh.devices, newest, now, self.config, self.fleet
        )
        msg_of_row = np.repeat(np.arange(len(fresh.devices)), counts)
        late = is_value & (t_us < np.asarray(wm_msg, np.int64)[msg_of_row])
        if self._fold:
            fold = is_value & ~late
            self.windows.add(series[fold], t_us[fold], value[fold])
            self.folded = True
        if late.any():
            self.observer.late(int(late.sum()))
            self._late = late_columns(late, fresh, wm_msg, msg_of_row)
        alarms.extend(self.series_alarms.process(fresh))
        alarms.extend(self.device_rules.telemetry(fresh))
        if self.device_rules.site_patterns:
            out.site_readings.extend(site_readings(fresh, self.registry))
        seq_rows = np.repeat(np.asarray(fresh.seqs, np.int64), counts)
        return ReadingColumns(series, t_us, value, seq_rows, fresh.faults or None)

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
            encoded = encode_points(
                self.encoder, PointColumns(self.registry.names, aggregates=aggregates), [], []
            )
            if encoded is not None:
                out.points.append(encoded)
        self._announce(out, aggregates)
        alarms.extend(self.device_rules.tick(now))
        alarms.extend(self.evictor.maybe(now))
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

    def evict_idle(self, now: int) -> list[AlarmEvent]:
        """Forget devices silent for ``evict_idle_us`` (see :meth:`Evictor.evict_idle`)."""
        return self.evictor.evict_idle(now)

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

    # -- snapshots ----------------------------------------------------------------

    def snapshot(self, *, copy: bool = True) -> dict[str, Any]:
        """Return the shard's whole state as plain data (for Bytewax recovery).

        Large state is numpy arrays. ``copy=False`` hands out the live arrays, which
        the next :meth:`process` or :meth:`tick` changes in place: only for a caller
        that serialises the snapshot at once (the flow does:
        :func:`dataflows.snapshot_blob.encode`).
        """
        return {
            "registry": self.registry.snapshot(),
            "windows": self.windows.snapshot(copy=copy),
            "series_alarms": self.series_alarms.snapshot(copy=copy),
            "detectors": self.device_rules.snapshot(copy=copy),
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


def _registry(config: StreamConfig, state: dict[str, Any] | None, now: int) -> Registry:
    """Return a fresh registry, or the one of a recovery snapshot."""
    caps = config.caps.per_shard(config.shards)
    if state is None:
        return Registry(config.dedupe_intervals, caps)
    return Registry.restore(
        state["registry"], dedupe_intervals=config.dedupe_intervals, now_us=now, caps=caps
    )
