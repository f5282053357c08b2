"""Exact dedupe of a shard's messages by (device, outbox, sequence), committed per batch.

:class:`SeenCheck` says which messages of a decoded batch are new. It records them only
when the batch succeeds (:meth:`SeenCheck.commit`): a batch that fails part-way is
retried message by message, and its messages must not look like duplicates of
themselves then.
"""

from __future__ import annotations

import logging

import numpy as np

from dataflows.decode import DecodedBatch
from dataflows.dedupe import SequenceSet
from dataflows.fresh import Fresh
from dataflows.observer import Observer
from dataflows.registry import NONE, Registry

log = logging.getLogger(__name__)

__all__ = ["SeenCheck"]


class SeenCheck:
    """Which messages are new, for one shard's registry (see the module docstring)."""

    def __init__(self, registry: Registry, observer: Observer) -> None:
        self.registry = registry
        self.observer = observer
        self._to_commit: list[tuple[SequenceSet, int]] = []
        # Shared by every segment of a call: a batch split at a status message (a
        # device's birth between an event and its re-send) must still see the first.
        self._batch_keys: set[tuple[int, str | None, int]] = set()

    def begin(self) -> None:
        """Start a batch: forget what the last one saw but did not commit."""
        self._to_commit = []
        self._batch_keys = set()

    def check(self, decoded: DecodedBatch) -> list[bool]:
        """Return which messages are new (recorded only at :meth:`commit`).

        A message is a duplicate when its (device, outbox, sequence) was seen, unless its
        readings are newer than any the device sent before: a redelivery carries the
        times of its first delivery, so such a message is new data from a device whose
        sequence went back (an outbox recreated by an agent that sends no outbox id). That
        is counted and logged as a reset, never dropped. (Only for messages that carry
        their own reading times: an adapter dates readings without a time by their
        arrival, so its redeliveries look newer.) Jumps forward are counted as
        sequence gaps (missing messages, which a backlog may still fill).
        """
        reg = self.registry
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
                self._take(dev, seq, key, seen)
            keep.append(new)
        return keep

    def fresh(self, decoded: DecodedBatch) -> Fresh | None:
        """Return the batch's new telemetry (duplicates dropped, counted); None if none.

        Drops the duplicates' arrival times from ``decoded.msg_received_us`` too.
        """
        n_msgs = decoded.messages
        if not n_msgs:
            return None
        counts = np.asarray(decoded.msg_count, dtype=np.int64)
        keep = self.check(decoded)
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
        kept = msg_index.tolist()
        return Fresh(
            devices=[decoded.msg_device[i] for i in kept],
            seqs=[decoded.msg_seq[i] for i in kept],
            event_ids=[decoded.msg_event_id[i] for i in kept],
            traceparents=[decoded.msg_traceparent[i] for i in kept],
            received_us=decoded.msg_received_us,
            counts=counts,
            series=series,
            t_us=t_us,
            value=value,
            faults=faults,
        )

    def commit(self) -> None:
        """Record every message the batch took as seen (the batch succeeded)."""
        for seen, seq in self._to_commit:
            seen.add(seq)
        self._to_commit = []

    def _take(
        self, dev: int, seq: int, key: tuple[int, str | None, int], seen: SequenceSet
    ) -> None:
        reg = self.registry
        high = reg.high_seq[dev]
        if high >= 0 and seq > high + 1:
            self.observer.sequence_gap(reg.sites[dev], reg.devices[dev], seq - high - 1)
        if seq > high:
            reg.high_seq[dev] = seq
        self._batch_keys.add(key)
        self._to_commit.append((seen, seq))

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


def _newest(decoded: DecodedBatch, start: int, end: int) -> int:
    """Newest valued reading time of the rows ``start:end`` (NONE when none has a value)."""
    t = decoded.t_us[start:end][~np.isnan(decoded.value[start:end])]
    return int(t.max()) if len(t) else NONE
