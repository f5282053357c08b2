"""Event-time windows over columns: every open window of a shard in a few arrays.

Pure numpy, no Bytewax. Times are integer microseconds since the Unix epoch (UTC), so
window bounds are exact. Windows are aligned to the epoch: a 10 s window starts at a
multiple of 10 s. A sliding window of length L and step S holds each reading in L/S
windows; a tumbling window is a sliding window whose step is its length.

:class:`WindowStore` keeps one row per open (series, window spec, start), sorted by a
64-bit key, with count, mean, M2 (for the variance), min, max, first and last. A batch
of readings is folded in with array operations: readings are grouped by key
(``lexsort`` + ``reduceat``), each group's partial aggregate is computed, and partials
are merged into the open rows with Chan's parallel formulas; new keys are inserted.
Results equal a reading-by-reading fold (the mean and variance to rounding). Extreme
finite values (±1e308) cannot overflow the mean (it is a weighted mean, never a sum);
a variance that overflows is reported as NaN, which storage omits, and nothing raises.

:meth:`WindowStore.close` takes each device's watermark and returns every window that
ends at or before it, as :class:`~dataflows.columns.AggregateColumns`; a late reading
never reopens a closed window because the shard step diverts readings older than the
watermark before they reach the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from contract.durations import parse_duration
from dataflows.columns import AggregateColumns

__all__ = ["Aggregate", "WindowSpec", "WindowStore", "parse_window"]

_MIN_STEP_US = 10_000  # start indices must fit the key's 40 bits (see _START_BITS)
_START_BITS = 40
_START_BIAS = 1 << (_START_BITS - 1)  # window indices before 1970 stay positive in the key
_MAX_SPECS = 8

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def _parse_duration(text: str) -> int:
    value = parse_duration(text) // timedelta(microseconds=1)
    if value <= 0:
        raise ValueError(f"a window must be longer than zero; got {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A window shape: ``name`` is the ``window`` tag written with its aggregates."""

    name: str
    length_us: int
    step_us: int

    @property
    def sliding(self) -> bool:
        """Whether windows overlap."""
        return self.step_us != self.length_us

    def starts_for(self, t_us: int) -> range:
        """Start times of every window that holds time ``t_us``."""
        last = t_us - t_us % self.step_us
        first = last - self.length_us + self.step_us
        return range(first, last + 1, self.step_us)


def parse_window(text: str) -> WindowSpec:
    """Parse ``"10s"`` (tumbling) or ``"5m/1m"`` (sliding: length/step).

    Each duration is written as :func:`contract.durations.parse_duration` reads it.
    """
    length_text, _, step_text = text.partition("/")
    length = _parse_duration(length_text)
    step = _parse_duration(step_text) if step_text else length
    if length % step != 0:
        raise ValueError(f"a sliding window's length must be a multiple of its step; got {text!r}")
    if step < _MIN_STEP_US:
        raise ValueError(f"a window's step must be at least 10ms; got {text!r}")
    return WindowSpec(text.strip().replace(" ", ""), length, step)


@dataclass(frozen=True, slots=True)
class Aggregate:
    """The aggregate of one series over one closed window (for per-event consumers)."""

    site: str
    device: str
    sensor: str
    metric: str
    window: str
    start_us: int
    end_us: int
    count: int
    mean: float
    min: float
    max: float
    stddev: float | None
    first: float
    last: float

    @property
    def start(self) -> datetime:
        """The window's start (UTC)."""
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=self.start_us)


_FIELDS = ("key", "count", "mean", "m2", "min", "max", "first_t", "first_v", "last_t", "last_v")


class WindowStore:
    """Open windows of every series of one shard, for a set of window specs."""

    def __init__(self, specs: tuple[WindowSpec, ...]) -> None:
        if not 1 <= len(specs) <= _MAX_SPECS:
            raise ValueError(f"between 1 and {_MAX_SPECS} window specs; got {len(specs)}")
        self.specs = specs
        self.names = tuple(s.name for s in specs)
        self._n = len(specs)
        self._step = np.asarray([s.step_us for s in specs], np.int64)
        self._length = np.asarray([s.length_us for s in specs], np.int64)
        self._min_end: int | None = None
        self._clear()

    def _clear(self) -> None:
        self.key = np.zeros(0, np.int64)
        self.count = np.zeros(0, np.int64)
        self.mean = np.zeros(0, np.float64)
        self.m2 = np.zeros(0, np.float64)
        self.min = np.zeros(0, np.float64)
        self.max = np.zeros(0, np.float64)
        self.first_t = np.zeros(0, np.int64)
        self.first_v = np.zeros(0, np.float64)
        self.last_t = np.zeros(0, np.int64)
        self.last_v = np.zeros(0, np.float64)

    def __len__(self) -> int:
        return len(self.key)

    def next_end_us(self) -> int | None:
        """Return the earliest end among open windows, or None when none is open."""
        return self._min_end

    # -- keys ---------------------------------------------------------------------

    def _keys(self, series: npt.NDArray[np.int32], t_us: I64) -> tuple[I64, I64]:
        """Return (keys, reading index) for every (reading, window) pair."""
        keys, rows = [], []
        for i, spec in enumerate(self.specs):
            per = spec.length_us // spec.step_us
            last_idx = t_us // spec.step_us + _START_BIAS
            slot = (series.astype(np.int64) * self._n + i) << _START_BITS
            if per == 1:
                keys.append(slot + last_idx)
                rows.append(np.arange(len(t_us), dtype=np.int64))
            else:
                offsets = np.arange(per, dtype=np.int64)
                keys.append(
                    (slot + last_idx)[:, None].repeat(per, 1).ravel() - np.tile(offsets, len(t_us))
                )
                rows.append(np.repeat(np.arange(len(t_us), dtype=np.int64), per))
        return np.concatenate(keys), np.concatenate(rows)

    def _decode(self, key: I64) -> tuple[I64, I64, I64, I64]:
        """Return (series, spec index, start, end) of keys."""
        slot = key >> _START_BITS
        spec = slot % self._n
        series = slot // self._n
        start = ((key & ((1 << _START_BITS) - 1)) - _START_BIAS) * self._step[spec]
        return series, spec, start, start + self._length[spec]

    # -- folding ------------------------------------------------------------------

    def add(self, series: npt.NDArray[np.int32], t_us: I64, values: F64) -> None:
        """Fold readings (series index, time, finite value) into their windows."""
        if not len(series):
            return
        keys, rows = self._keys(series, t_us)
        t = t_us[rows]
        v = values[rows]
        # Group by key. The sort need not be stable: ties in time are broken by the
        # reading's position in the batch below (first: earliest arrival; last: latest).
        order = np.argsort(keys)
        keys, t_s, v_s = keys[order], t[order], v[order]
        head = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        count = np.diff(np.append(head, len(keys)))
        with np.errstate(all="ignore"):
            mean = np.add.reduceat(v_s * (1.0 / np.repeat(count, count)), head)
            dev = v_s - np.repeat(mean, count)
            m2 = np.add.reduceat(dev * dev, head)
        t_min = np.minimum.reduceat(t_s, head)
        t_max = np.maximum.reduceat(t_s, head)
        big = len(keys)
        first = np.minimum.reduceat(np.where(t_s == np.repeat(t_min, count), order, big), head)
        last = np.maximum.reduceat(np.where(t_s == np.repeat(t_max, count), order, -1), head)
        part = {
            "key": keys[head],
            "count": count.astype(np.int64),
            "mean": mean,
            "m2": m2,
            "min": np.minimum.reduceat(v_s, head),
            "max": np.maximum.reduceat(v_s, head),
            "first_t": t_min,
            "first_v": v[first],
            "last_t": t_max,
            "last_v": v[last],
        }
        self._merge(part)

    def _merge(self, part: dict[str, Any]) -> None:
        n_open = len(self.key)
        pos = np.searchsorted(self.key, part["key"])
        found = np.zeros(len(pos), np.bool_)
        inside = pos < n_open
        found[inside] = self.key[pos[inside]] == part["key"][inside]
        if found.all():
            self._combine(pos, part)
            return
        if found.any():
            self._combine(pos[found], {k: a[found] for k, a in part.items()})
        new = ~found
        fresh = {k: a[new] for k, a in part.items()}
        for name in _FIELDS:
            setattr(self, name, np.concatenate((getattr(self, name), fresh[name])))
        if n_open and fresh["key"][0] < self.key[n_open - 1]:
            order = np.argsort(self.key, kind="stable")
            for name in _FIELDS:
                setattr(self, name, getattr(self, name)[order])
        least = int(self._decode(fresh["key"])[3].min())
        self._min_end = least if self._min_end is None else min(self._min_end, least)

    def _combine(self, at: I64, part: dict[str, Any]) -> None:
        """Merge partial aggregates into the open rows ``at`` (distinct rows)."""
        na = self.count[at]
        nb = part["count"]
        n = (na + nb).astype(np.float64)
        with np.errstate(all="ignore"):
            ma, mb = self.mean[at], part["mean"]
            self.mean[at] = ma * (na / n) + mb * (nb / n)
            delta = mb - ma
            self.m2[at] = self.m2[at] + part["m2"] + delta * delta * (na * (nb / n))
        self.count[at] = na + nb
        self.min[at] = np.minimum(self.min[at], part["min"])
        self.max[at] = np.maximum(self.max[at], part["max"])
        earlier = part["first_t"] < self.first_t[at]
        if earlier.any():
            take = at[earlier]
            self.first_t[take] = part["first_t"][earlier]
            self.first_v[take] = part["first_v"][earlier]
        later = part["last_t"] >= self.last_t[at]
        take = at[later]
        self.last_t[take] = part["last_t"][later]
        self.last_v[take] = part["last_v"][later]

    # -- closing ------------------------------------------------------------------

    def close(
        self, watermarks: I64, series_device: npt.NDArray[np.int32]
    ) -> AggregateColumns | None:
        """Close every window whose end is at or before its device's watermark.

        ``watermarks[d]`` is device ``d``'s watermark (anything below every real time
        for none); ``series_device[s]`` the device of series ``s``.
        """
        if self._min_end is None or not len(watermarks) or self._min_end > watermarks.max():
            return None
        series, spec, start, end = self._decode(self.key)
        done = end <= watermarks[series_device[series]]
        if not done.any():
            self._min_end = int(end.min())
            return None
        sel = np.flatnonzero(done)
        order = sel[np.lexsort((spec[sel], end[sel]))]  # by end, then spec: time order
        count = self.count[order]
        lo, hi = self.min[order], self.max[order]
        with np.errstate(all="ignore"):
            var = np.where(count > 1, self.m2[order] / np.maximum(count - 1, 1), np.nan)
            stddev = np.sqrt(var)
        stddev[~np.isfinite(stddev)] = np.nan
        # Near ±1.8e308 the weighted mean rounds a few ulps past the values themselves,
        # and their deviations square to inf: a window of equal values still has their
        # mean and a standard deviation of 0.
        mean = np.clip(self.mean[order], lo, hi)
        stddev[(lo == hi) & (count > 1)] = 0.0
        out = AggregateColumns(
            series=series[order].astype(np.int32),
            window=spec[order].astype(np.int8),
            window_names=self.names,
            start_us=start[order],
            count=count,
            mean=mean,
            min=lo,
            max=hi,
            stddev=stddev,
            first=self.first_v[order],
            last=self.last_v[order],
        )
        keep = ~done
        for name in _FIELDS:
            setattr(self, name, getattr(self, name)[keep])
        self._min_end = int(end[keep].min()) if keep.any() else None
        return out

    # -- snapshots ----------------------------------------------------------------

    def series_open(self) -> npt.NDArray[np.int64]:
        """Return the series that have an open window (sorted, unique)."""
        return np.unique(self._decode(self.key)[0]) if len(self.key) else np.zeros(0, np.int64)

    def remap_series(self, series_map: I64) -> None:
        """Renumber series by ``series_map`` (old -> new, -1: evicted) after an eviction.

        The map keeps the order of the series it keeps, so keys stay sorted.
        """
        if not len(self.key):
            return
        series, spec, _, _ = self._decode(self.key)
        new = series_map[series]
        keep = new >= 0
        low = self.key & ((1 << _START_BITS) - 1)
        key = ((new * self._n + spec) << _START_BITS) + low
        for name in _FIELDS:
            setattr(self, name, getattr(self, name)[keep])
        self.key = key[keep]
        self._min_end = int(self._decode(self.key)[3].min()) if len(self.key) else None

    def snapshot(self, *, copy: bool = True) -> dict[str, Any]:
        """Return the open windows as plain data: copies, or the live arrays (``copy=False``).

        :meth:`add` merges into the live arrays in place: a caller of ``copy=False``
        serialises them before the next batch.
        """
        if not copy:
            return {name: getattr(self, name) for name in _FIELDS} | {"specs": self.names}
        return {name: getattr(self, name).copy() for name in _FIELDS} | {"specs": self.names}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot` (taken with the same window specs)."""
        if tuple(state["specs"]) != self.names:
            raise ValueError(
                f"the snapshot's windows {tuple(state['specs'])} differ from {self.names}"
            )
        for name in _FIELDS:
            setattr(self, name, np.asarray(state[name]).copy())
        self._min_end = int(self._decode(self.key)[3].min()) if len(self.key) else None


def aggregates_of(cols: AggregateColumns, names: Any) -> list[Aggregate]:
    """Return closed windows as :class:`Aggregate` objects (for per-event consumers).

    ``names`` is the shard's :class:`~dataflows.columns.SeriesNames`.
    """
    out = []
    window_names = cols.window_names
    for i in range(len(cols)):
        s = int(cols.series[i])
        spec = int(cols.window[i])
        stddev = float(cols.stddev[i])
        start = int(cols.start_us[i])
        out.append(
            Aggregate(
                names.site[s],
                names.device[s],
                names.sensor[s],
                names.metric[s],
                window_names[spec],
                start,
                start + _length_of(window_names[spec]),
                int(cols.count[i]),
                float(cols.mean[i]),
                float(cols.min[i]),
                float(cols.max[i]),
                None if stddev != stddev else stddev,
                float(cols.first[i]),
                float(cols.last[i]),
            )
        )
    return out


def _length_of(name: str) -> int:
    return parse_window(name).length_us
