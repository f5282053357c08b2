"""The cadence of a device: the median interval between its messages, learnt as they come.

The deadman's ``silence = "auto"`` is ``factor`` times this median (at least a floor),
so a device that reports every 5 minutes is not silent at 300 s, and one that reports
every second is silent after the floor (30 s by default), not after minutes.

An interval is the time between two consecutive messages of a device: between their
arrivals or between their newest readings' times, whichever is longer. So neither a
burst of queued messages flushed at once (arrivals microseconds apart, readings
minutes apart) nor a device clock stuck at one time (readings at one instant, arrivals
apart) shrinks the cadence. Intervals of zero are not counted.

Memory is bounded: the last :data:`CADENCE_INTERVALS` intervals per device in a ring,
whose median is robust to the gaps themselves (one long interval after an outage does
not move it) and follows a real change of cadence after half a ring.

- :class:`CadenceArrays`: every device of a shard in numpy arrays; a batch of messages
  is taken with array operations (several messages of one device in one batch are taken
  in rounds, the first of each device, then the second, ...).
- :class:`Cadence`: the same for one device or series, in plain Python (the scalar
  deadman detector: series scope, and the scalar reference engine).
- :func:`auto_silence_us`: the silence a deadman allows, from a median and a count.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, overload

import numpy as np
import numpy.typing as npt

__all__ = ["CADENCE_INTERVALS", "Cadence", "CadenceArrays", "auto_silence_us", "median_of"]

CADENCE_INTERVALS = 16
"""Intervals kept per device (the median is over these)."""

_NONE = np.iinfo(np.int64).min
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@overload
def auto_silence_us(
    median_us: float, count: int, *, factor: float, floor_us: int, initial_us: int
) -> int: ...


@overload
def auto_silence_us(
    median_us: F64,
    count: npt.NDArray[np.integer[Any]],
    *,
    factor: float | F64,
    floor_us: int | I64,
    initial_us: int | I64,
) -> I64: ...


def auto_silence_us(
    median_us: float | F64,
    count: int | npt.NDArray[np.integer[Any]],
    *,
    factor: float | F64,
    floor_us: int | I64,
    initial_us: int | I64,
) -> int | I64:
    """Return the silence allowed: ``factor`` x the median, at least ``floor_us``.

    ``initial_us`` while no interval is known (``count`` 0). Works on scalars and arrays.
    """
    with np.errstate(invalid="ignore"):
        learnt = np.maximum(floor_us, np.ceil(factor * np.nan_to_num(median_us)))
    out = np.where(np.asarray(count) > 0, learnt, initial_us).astype(np.int64)
    return int(out) if out.ndim == 0 else out


def median_of(values: list[float]) -> float:
    """Return the median as numpy computes it (the mean of the two middle values if even)."""
    ordered = sorted(values)
    n = len(ordered)
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


class Cadence:
    """The cadence of one device or series (the scalar twin of :class:`CadenceArrays`)."""

    __slots__ = ("_arrival", "_event", "intervals")

    def __init__(self) -> None:
        self.intervals: deque[int] = deque(maxlen=CADENCE_INTERVALS)
        self._arrival: int | None = None
        self._event: int | None = None

    def observe(self, arrival_us: int, event_us: int | None = None) -> None:
        """Take one message: its arrival and the time of its newest reading."""
        event_us = arrival_us if event_us is None else event_us
        if self._arrival is not None and self._event is not None:
            interval = max(arrival_us - self._arrival, event_us - self._event)
            if interval > 0:
                self.intervals.append(interval)
        if self._arrival is None or arrival_us >= self._arrival:
            self._arrival = arrival_us
        if self._event is None or event_us >= self._event:
            self._event = event_us

    @property
    def count(self) -> int:
        """Intervals known (at most :data:`CADENCE_INTERVALS`)."""
        return len(self.intervals)

    @property
    def median_us(self) -> float:
        """The median interval (NaN while none is known)."""
        return median_of(list(self.intervals)) if self.intervals else math.nan

    def snapshot(self) -> dict[str, Any]:
        """Return the state as plain data."""
        return {"intervals": list(self.intervals), "arrival": self._arrival, "event": self._event}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot`."""
        self.intervals = deque(state["intervals"], maxlen=CADENCE_INTERVALS)
        self._arrival, self._event = state["arrival"], state["event"]


class CadenceArrays:
    """The cadence of every device of a shard, in arrays (see the module docstring)."""

    def __init__(self) -> None:
        k = CADENCE_INTERVALS
        self.ring: I64 = np.zeros((0, k), np.int64)
        self.count: I64 = np.zeros(0, np.int64)
        """Intervals known per device (at most the ring's width)."""
        self.next: I64 = np.zeros(0, np.int64)
        """Where each device's next interval goes in its ring."""
        self.arrival: I64 = np.zeros(0, np.int64)
        self.event: I64 = np.zeros(0, np.int64)
        self.median_us: F64 = np.zeros(0, np.float64)
        """The median interval per device (NaN while none is known)."""

    @property
    def size(self) -> int:
        """Devices held."""
        return len(self.count)

    def grow(self, size: int) -> None:
        """Make room for devices ``0 .. size-1`` (new ones know nothing yet)."""
        extra = size - self.size
        if extra <= 0:
            return
        k = self.ring.shape[1]
        self.ring = np.concatenate((self.ring, np.zeros((extra, k), np.int64)))
        self.count = np.concatenate((self.count, np.zeros(extra, np.int64)))
        self.next = np.concatenate((self.next, np.zeros(extra, np.int64)))
        self.arrival = np.concatenate((self.arrival, np.full(extra, _NONE, np.int64)))
        self.event = np.concatenate((self.event, np.full(extra, _NONE, np.int64)))
        self.median_us = np.concatenate((self.median_us, np.full(extra, np.nan)))

    def take(self, devices: I64) -> None:
        """Keep only ``devices``, renumbered ``0 .. len(devices)-1`` in that order."""
        devices = devices[devices < self.size]
        for name in ("ring", "count", "next", "arrival", "event", "median_us"):
            setattr(self, name, getattr(self, name)[devices].copy())

    def observe(self, devices: I64, arrival_us: I64, event_us: I64) -> None:
        """Take a batch of messages (any order): device, arrival, newest reading time."""
        if not len(devices):
            return
        devices = np.asarray(devices, np.int64)
        self.grow(int(devices.max()) + 1)
        order = np.lexsort((event_us, arrival_us, devices))
        d, a, e = devices[order], np.asarray(arrival_us)[order], np.asarray(event_us)[order]
        head = np.concatenate(([True], d[1:] != d[:-1]))
        starts = np.flatnonzero(head)
        rank = np.arange(len(d)) - np.repeat(starts, np.diff(np.append(starts, len(d))))
        for k in range(int(rank.max()) + 1):
            take = rank == k
            self._round(d[take], a[take], e[take])
        touched = np.unique(d)
        self.median_us[touched] = self._medians(touched)

    def _round(self, d: I64, a: I64, e: I64) -> None:
        """Take one message of each of the distinct devices ``d``."""
        last_a, last_e = self.arrival[d], self.event[d]
        known = (last_a != _NONE) & (last_e != _NONE)
        with np.errstate(over="ignore"):
            interval = np.maximum(a - last_a, e - last_e)
        take = known & (interval > 0)
        if take.any():
            dt, iv = d[take], interval[take]
            width = self.ring.shape[1]
            self.ring[dt, self.next[dt]] = iv
            self.next[dt] = (self.next[dt] + 1) % width
            self.count[dt] = np.minimum(self.count[dt] + 1, width)
        self.arrival[d] = np.where((last_a == _NONE) | (a >= last_a), a, last_a)
        self.event[d] = np.where((last_e == _NONE) | (e >= last_e), e, last_e)

    def _medians(self, devices: I64) -> F64:
        rows = self.ring[devices].astype(np.float64)
        n = self.count[devices]
        width = rows.shape[1]
        rows[np.arange(width)[None, :] >= n[:, None]] = np.inf  # unfilled slots sort last
        rows.sort(axis=1)
        lo = np.clip((n - 1) // 2, 0, width - 1)
        hi = np.clip(n // 2, 0, width - 1)
        picked = np.arange(len(devices))
        median = (rows[picked, lo] + rows[picked, hi]) / 2
        return np.where(n > 0, median, np.nan)

    def snapshot(self, *, copy: bool = True) -> dict[str, Any]:
        """Every device's learnt intervals as arrays (their arrivals are not kept).

        ``copy=False`` returns views of the live arrays, for a caller that serialises
        them before the next :meth:`observe`.
        """
        state = {"ring": self.ring, "count": self.count, "next": self.next}
        return {k: v.copy() for k, v in state.items()} if copy else state

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot` (its arrivals start afresh, as with :meth:`restore_of`)."""
        ring = np.asarray(state["ring"], np.int64)
        count = np.asarray(state["count"], np.int64)
        nxt = np.asarray(state["next"], np.int64)
        if ring.ndim != 2 or not len(ring) == len(count) == len(nxt):
            raise ValueError(f"cadence arrays of mismatched shapes: {ring.shape}, {count.shape}")
        width = self.ring.shape[1]
        if ring.shape[1] != width:  # another ring width: keep the newest intervals, in order
            for device in range(len(count)):
                n, at = int(count[device]), int(nxt[device])
                order = [(at - n + i) % ring.shape[1] for i in range(n)]
                self.restore_of(device, {"intervals": ring[device, order].tolist()})
            return
        self.grow(len(count))
        n = len(count)
        self.ring[:n] = ring
        self.count[:n] = count
        self.next[:n] = nxt
        self.arrival[:n] = _NONE
        self.event[:n] = _NONE
        self.median_us[:n] = self._medians(np.arange(n, dtype=np.int64))

    def snapshot_of(self, device: int) -> dict[str, Any] | None:
        """One device's learnt intervals as plain data (None: nothing learnt)."""
        if device >= self.size or not self.count[device]:
            return None
        n, nxt = int(self.count[device]), int(self.next[device])
        width = self.ring.shape[1]
        # Oldest first, as the scalar Cadence keeps them.
        order = [(nxt - n + i) % width for i in range(n)]
        return {"intervals": [int(self.ring[device, j]) for j in order]}

    def restore_of(self, device: int, state: dict[str, Any] | None) -> None:
        """Load one device's :meth:`snapshot_of` (its arrivals start afresh)."""
        if not state:
            return
        self.grow(device + 1)
        width = self.ring.shape[1]
        intervals = list(state["intervals"])[-width:]
        self.ring[device] = 0
        self.ring[device, : len(intervals)] = intervals
        self.count[device] = len(intervals)
        self.next[device] = len(intervals) % width
        self.median_us[device] = self._medians(np.asarray([device], np.int64))[0]
