"""The devices and series of one shard: names, indices, dedupe sets, event clocks.

Every device a shard has seen gets a small integer index, every (device, sensor,
metric) series another; the columnar steps address state by these indices. Lookups
are per message (a device) and per reading only through C-level ``map`` over a per-
device dict, so no Python code runs per reading.

The event clock of a device (see :mod:`dataflows.eventclock`) lives here too, in plain
lists indexed by device: the per-message loop reads and writes single entries, which
Python lists do faster than numpy arrays.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from dataflows.columns import SeriesNames
from dataflows.dedupe import SequenceSet

__all__ = ["NONE", "Caps", "Registry"]

NONE = -(2**62)
"""Stands for "no time yet" in the int lists below (less than any real time)."""


@dataclass(frozen=True, slots=True)
class Caps:
    """Most devices and series one registry takes (None: no cap).

    Every device and series holds state for as long as the gateway runs, so a device
    that invents sensor names, or a flood of made-up device ids, would grow memory
    without bound. Messages that would go past a cap become dead letters
    (``cardinality``) instead.
    """

    devices: int | None = None
    series: int | None = None
    series_per_device: int | None = None

    def per_shard(self, shards: int) -> Caps:
        """Return one shard's share of gateway-wide caps (devices hash evenly to shards)."""

        def share(cap: int | None) -> int | None:
            return None if cap is None else math.ceil(cap / shards)

        return Caps(share(self.devices), share(self.series), self.series_per_device)


class Registry:
    """Devices and series of one shard (append-only indices)."""

    def __init__(self, dedupe_intervals: int = 256, caps: Caps | None = None) -> None:
        self.dedupe_intervals = dedupe_intervals
        self.caps = caps or Caps()
        self.device_index: dict[str, int] = {}
        self.sites: list[str] = []
        self.devices: list[str] = []
        self.seen: list[SequenceSet] = []
        """Sequences seen of each device's current outbox."""
        self.outbox: list[str | None] = []
        """Each device's current outbox id (None: an agent that sends none)."""
        self.old_outboxes: list[dict[str, SequenceSet] | None] = []
        """Sequences seen of a device's previous outboxes (at most two), for messages
        of an old outbox that are still redelivered after a new one started."""
        self.high_seq: list[int] = []
        """Highest sequence of each device's current outbox (-1: none yet)."""
        self.newest_seen_us: list[int] = []
        """Newest reading time of any message accepted from each device, late or not: a
        message whose readings are newer cannot be a redelivery of one seen before."""
        self.series_by_device: list[dict[tuple[str, str], int]] = []
        # Event clock, per device (microseconds; NONE before the first reading).
        self.max_event_us: list[int] = []
        self.last_wm_us: list[int] = []
        self.last_arrival_us: list[int] = []
        self.names = SeriesNames()
        self._series_device: list[int] = []
        self._series_device_arr: npt.NDArray[np.int32] = np.zeros(0, np.int32)

    # -- devices ------------------------------------------------------------------

    def device(self, site: str, device: str) -> int:
        """Return the index of a device, registering it on first sight."""
        key = f"{site}/{device}"
        index = self.device_index.get(key)
        if index is None:
            index = len(self.devices)
            self.device_index[key] = index
            self.sites.append(site)
            self.devices.append(device)
            self.seen.append(SequenceSet(self.dedupe_intervals))
            self.outbox.append(None)
            self.old_outboxes.append(None)
            self.high_seq.append(-1)
            self.newest_seen_us.append(NONE)
            self.series_by_device.append({})
            self.max_event_us.append(NONE)
            self.last_wm_us.append(NONE)
            self.last_arrival_us.append(NONE)
        return index

    def find_device(self, site: str, device: str) -> int | None:
        """Return the index of a known device, or None."""
        return self.device_index.get(f"{site}/{device}")

    def refuse_device(self, site: str, device: str) -> str | None:
        """Say why a message of ``site/device`` cannot be taken (None: it can).

        Only a device not seen before can be refused: when the shard is at its cap.
        """
        cap = self.caps.devices
        if cap is None or len(self.devices) < cap or f"{site}/{device}" in self.device_index:
            return None
        return (
            f"device {site}/{device} is new and this shard already holds {cap} devices"
            " (the gateway's max_devices, shared among its shards)"
        )

    def refuse_series(self, device: int | None, new_keys: int) -> str | None:
        """Say why ``new_keys`` new series of ``device`` cannot be taken (None: they can)."""
        if not new_keys:
            return None
        caps = self.caps
        have = 0 if device is None else len(self.series_by_device[device])
        if caps.series_per_device is not None and have + new_keys > caps.series_per_device:
            return (
                f"the message adds {new_keys} series to a device that has {have};"
                f" the cap is {caps.series_per_device} per device (max_series_per_device)"
            )
        if caps.series is not None and len(self.names) + new_keys > caps.series:
            return (
                f"the message adds {new_keys} series and this shard already holds"
                f" {len(self.names)} (the gateway's max_series, shared among its shards)"
            )
        return None

    def seen_of(self, device: int, outbox: str | None) -> tuple[SequenceSet, bool]:
        """Return the sequences seen of ``device`` in ``outbox``, and whether it is new.

        A new outbox means the device's store was recreated: its sequences start again.

        A message without an outbox id counts in the current one (older agents); the
        first id a device sends is adopted as its current outbox.
        """
        current = self.outbox[device]
        if outbox is None or outbox == current:
            return self.seen[device], False
        if current is None:
            self.outbox[device] = outbox
            return self.seen[device], False
        old = self.old_outboxes[device]
        if old is not None and outbox in old:
            return old[outbox], False
        # A new outbox: the current one becomes old (the newest two are kept).
        old = {} if old is None else old
        old[current] = self.seen[device]
        while len(old) > 2:
            del old[next(iter(old))]
        self.old_outboxes[device] = old
        self.outbox[device] = outbox
        self.seen[device] = SequenceSet(self.dedupe_intervals)
        self.high_seq[device] = -1
        return self.seen[device], True

    def reset_sequences(self, device: int) -> SequenceSet:
        """Forget the sequences seen of ``device``'s current outbox (a sequence reset)."""
        self.seen[device] = SequenceSet(self.dedupe_intervals)
        self.high_seq[device] = -1
        return self.seen[device]

    @property
    def device_count(self) -> int:
        """Number of devices."""
        return len(self.devices)

    # -- series -------------------------------------------------------------------

    def add_series(self, device: int, sensor: str, metric: str) -> int:
        """Register a new series of ``device``; return its index."""
        # Devices repeat the same few sensor and metric names: keep one copy of each.
        sensor, metric = sys.intern(sensor), sys.intern(metric)
        index = self.names.add(self.sites[device], self.devices[device], sensor, metric)
        self.series_by_device[device][(sensor, metric)] = index
        self._series_device.append(device)
        return index

    @property
    def series_count(self) -> int:
        """Number of series."""
        return len(self.names)

    def series_device(self) -> npt.NDArray[np.int32]:
        """Return the device index of every series (an array, rebuilt when it grew)."""
        if len(self._series_device_arr) != len(self._series_device):
            self._series_device_arr = np.asarray(self._series_device, dtype=np.int32)
        return self._series_device_arr

    def series_key(self, series: int) -> tuple[str, str, str, str]:
        """Return (site, device, sensor, metric) of a series."""
        n = self.names
        return n.site[series], n.device[series], n.sensor[series], n.metric[series]

    def iter_series(self) -> Iterable[tuple[int, str, str, str, str]]:
        """Yield (index, site, device, sensor, metric) of every series."""
        n = self.names
        return zip(range(len(n)), n.site, n.device, n.sensor, n.metric, strict=True)

    # -- eviction -----------------------------------------------------------------

    def compact(
        self, keep: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Keep only the devices where ``keep`` is True (and their series), renumbered.

        Return the maps old index -> new index (-1: evicted) of devices and of series.
        The names table is a new one (``uid``), so caches keyed on the old one lapse.
        """
        n_dev = len(self.devices)
        dev_map = np.full(n_dev, -1, np.int64)
        kept = np.flatnonzero(keep[:n_dev])
        dev_map[kept] = np.arange(len(kept))
        series_dev = self.series_device().astype(np.int64)
        series_keep = keep[series_dev] if len(series_dev) else np.zeros(0, np.bool_)
        series_map = np.full(len(series_dev), -1, np.int64)
        kept_series = np.flatnonzero(series_keep)
        series_map[kept_series] = np.arange(len(kept_series))

        idx = kept.tolist()
        for name in (
            "sites", "devices", "seen", "outbox", "old_outboxes", "high_seq",
            "newest_seen_us", "max_event_us", "last_wm_us", "last_arrival_us",
        ):  # fmt: skip
            column = getattr(self, name)
            setattr(self, name, [column[i] for i in idx])
        self.device_index = {
            f"{s}/{d}": i for i, (s, d) in enumerate(zip(self.sites, self.devices, strict=True))
        }
        old = self.names
        self.names = SeriesNames()
        self._series_device = []
        self.series_by_device = [{} for _ in idx]
        for s in kept_series.tolist():
            dev = int(dev_map[series_dev[s]])
            new = self.names.add(old.site[s], old.device[s], old.sensor[s], old.metric[s])
            self.series_by_device[dev][(old.sensor[s], old.metric[s])] = new
            self._series_device.append(dev)
        self._series_device_arr = np.zeros(0, np.int32)
        return dev_map, series_map

    # -- snapshots ----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Return the whole registry as plain data: columns, one entry per device.

        Columns, not a list per device: a snapshot is taken every epoch, and a list
        per device (with a dict per dedupe set) cost a few containers per device to
        build, pickle and collect. The dedupe intervals of every device's current
        outbox are two flat arrays cut by ``seen_counts``; previous outboxes are rare
        and stay per device (``old_outboxes``: device -> outbox -> intervals).
        """
        seen = self.seen
        starts = [s for sequences in seen for s in sequences.starts]
        ends = [e for sequences in seen for e in sequences.ends]
        return {
            "columns": {
                "site": list(self.sites),
                "device": list(self.devices),
                "outbox": list(self.outbox),
                "max_event_us": np.array(self.max_event_us, np.int64),
                "last_wm_us": np.array(self.last_wm_us, np.int64),
                "high_seq": np.array(self.high_seq, np.int64),
                "newest_seen_us": np.array(self.newest_seen_us, np.int64),
                "seen_counts": np.array([len(sequences) for sequences in seen], np.int64),
                "seen_starts": np.array(starts, np.int64),
                "seen_ends": np.array(ends, np.int64),
                "old_outboxes": {
                    i: {k: v.snapshot() for k, v in old.items()}
                    for i, old in enumerate(self.old_outboxes)
                    if old is not None
                },
            },
            # Columns (list copies run in C); a list per series cost a few ms per
            # snapshot at thousands of series, once per epoch.
            "series": {
                "device": list(self._series_device),
                "sensor": list(self.names.sensor),
                "metric": list(self.names.metric),
            },
        }

    @classmethod
    def restore(
        cls,
        state: dict[str, Any],
        *,
        dedupe_intervals: int,
        now_us: int,
        caps: Caps | None = None,
    ) -> Registry:
        """Rebuild from :meth:`snapshot`; quiet time starts at ``now_us`` (the restart).

        State restored is kept even beyond ``caps`` (they apply to what comes next).
        """
        reg = cls(dedupe_intervals)
        if "columns" in state:
            reg._restore_columns(state["columns"], now_us)
        else:  # a snapshot from before the columns: a list per device
            reg._restore_rows(state["devices"], now_us)
        series = state["series"]
        if isinstance(series, dict):
            series = zip(series["device"], series["sensor"], series["metric"], strict=True)
        for device, sensor, metric in series:  # older snapshots: a list per series
            reg.add_series(device, sensor, metric)
        reg.caps = caps or Caps()
        return reg

    def _restore_columns(self, cols: dict[str, Any], now_us: int) -> None:
        """Load the device columns of :meth:`snapshot`."""
        counts = np.asarray(cols["seen_counts"], np.int64).tolist()
        starts = np.asarray(cols["seen_starts"], np.int64).tolist()
        ends = np.asarray(cols["seen_ends"], np.int64).tolist()
        max_event = np.asarray(cols["max_event_us"], np.int64).tolist()
        last_wm = np.asarray(cols["last_wm_us"], np.int64).tolist()
        high = np.asarray(cols["high_seq"], np.int64).tolist()
        newest = np.asarray(cols["newest_seen_us"], np.int64).tolist()
        old_outboxes = cols["old_outboxes"]
        at = 0
        for i, (site, device) in enumerate(zip(cols["site"], cols["device"], strict=True)):
            index = self.device(site, device)
            n = counts[i]
            self.seen[index] = SequenceSet.of_columns(
                self.dedupe_intervals, starts[at : at + n], ends[at : at + n]
            )
            at += n
            self.max_event_us[index] = max_event[i]
            self.last_wm_us[index] = last_wm[i]
            self.last_arrival_us[index] = now_us
            self.outbox[index] = cols["outbox"][i]
            self.high_seq[index] = high[i]
            self.newest_seen_us[index] = newest[i]
            old = old_outboxes.get(i)
            if old is not None:
                self.old_outboxes[index] = {
                    k: SequenceSet.restore(self.dedupe_intervals, v) for k, v in old.items()
                }

    def _restore_rows(self, rows: list[Any], now_us: int) -> None:
        """Load the list per device of a snapshot from before the columns."""
        for site, device, seen, max_event, last_wm, *more in rows:
            index = self.device(site, device)
            self.seen[index] = SequenceSet.restore(self.dedupe_intervals, seen)
            self.max_event_us[index] = max_event
            self.last_wm_us[index] = last_wm
            self.last_arrival_us[index] = now_us
            last = self.seen[index].last()
            self.high_seq[index] = -1 if last is None else last
            self.newest_seen_us[index] = max_event
            if more:  # snapshots from before outbox ids have five fields
                outbox, high, newest, old = more
                self.outbox[index] = outbox
                self.high_seq[index] = high
                self.newest_seen_us[index] = newest
                if old is not None:
                    self.old_outboxes[index] = {
                        k: SequenceSet.restore(self.dedupe_intervals, v) for k, v in old.items()
                    }
