"""The aggregates the gateway owes for a burst, and the wait until it has written them.

The gateway writes a window's aggregate when the window closes, and the burst's last
windows close well after its last reading is stored: a device's watermark is its newest
event time minus the allowed lateness L, and once the device has been silent for the
quiet period Q it follows the fleet's clock, which itself advances with the wall clock
only after Q of silence (``dataflows/eventclock.py``). So the window ending at W closes
about ``2Q + L + (W - last event time)`` after the last message arrived: 30 s for the
last 10 s windows with the defaults, up to 90 s for the last 1 min window.

:func:`plan_aggregates` counts, from the workload alone, every (series, window) pair
the gateway must write: windows aligned to the epoch as the gateway aligns them (a
reading at ``t`` falls in the window starting at ``t - t % step`` and, for a sliding
window, the ``length / step - 1`` before it). :func:`watch_aggregates` keeps sampling
CPU, RSS and influxd's write count after the readings are stored, until the gateway's
``sensorgate_points_written_total{measurement="aggregates"}`` reaches that count, or has
been still for ``still_s`` past the moment the last window should have closed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dataflows.windows import parse_window
from gateway.bench.influxd import Influxd
from gateway.bench.measure import ProcessTree, Snapshot, take_snapshot
from gateway.bench.workload import METRICS, Workload

__all__ = ["AggregatePlan", "AggregatesDone", "plan_aggregates", "watch_aggregates"]


@dataclass(frozen=True, slots=True)
class AggregatePlan:
    """What the gateway owes for a burst: aggregates, and when the last can close."""

    expected: int
    """(series, window) pairs over the burst, every window spec together."""
    by_window: dict[str, int]
    """The same, per window spec (its ``window`` tag)."""
    last_event_us: int
    """The burst's newest event time (epoch µs)."""
    last_window_end_us: int
    """The latest end of a window the burst touches (epoch µs)."""

    def close_after_s(self, allowed_lateness_s: float, quiet_s: float) -> float:
        """Seconds after the last arrival by which the gateway closes the last window."""
        beyond = max(0, self.last_window_end_us - self.last_event_us) / 1e6
        return 2 * quiet_s + allowed_lateness_s + beyond


def _offsets_by_series(workload: Workload) -> list[list[int]]:
    """Return, per (sensor, metric) series, the indexes of its readings in a message."""
    by: dict[tuple[int, int], list[int]] = {}
    for j in range(workload.readings_per_message):
        by.setdefault((j % workload.sensors_per_device, j % METRICS), []).append(j)
    return list(by.values())


def plan_aggregates(workload: Workload, base_us: int, windows: Sequence[str]) -> AggregatePlan:
    """Count every (series, window) pair of the burst rendered from ``base_us``.

    ``windows`` are the gateway's window specs (``"10s"``, ``"5m/1m"``). Devices that
    send one message more than others (a partial last round) are counted apart.
    """
    specs = [parse_window(w) for w in windows]
    used = workload.publishing_devices
    full, extra = divmod(workload.messages, used)
    groups = [(n, d) for n, d in ((full + 1, extra), (full, used - extra)) if n and d]
    offsets = _offsets_by_series(workload)
    by_window = dict.fromkeys((s.name for s in specs), 0)
    last_end = base_us
    for n_messages, n_devices in groups:
        seq_us = np.arange(n_messages, dtype=np.int64) * 1_000_000 + base_us
        for js in offsets:
            t = (seq_us[:, None] + np.asarray(js, np.int64)[None, :] * 1_000).ravel()
            for spec in specs:
                last_idx = np.unique(t // spec.step_us)
                per = spec.length_us // spec.step_us
                # A sliding window holds a reading in `per` windows: the last one and
                # the per - 1 that started before it.
                idx = np.unique((last_idx[:, None] - np.arange(per)[None, :]).ravel())
                by_window[spec.name] += len(idx) * n_devices
                last_end = max(last_end, int(idx[-1]) * spec.step_us + spec.length_us)
    last_event = (
        base_us
        + (workload.messages_per_device - 1) * 1_000_000
        + (workload.readings_per_message - 1) * 1_000
    )
    return AggregatePlan(sum(by_window.values()), by_window, last_event, last_end)


@dataclass
class AggregatesDone:
    """How the wait for the aggregates ended."""

    expected: int
    written: float | None
    """The gateway's count at the end (None: it could not be read)."""
    end: Snapshot
    """The first sample that saw the last change of influxd's point count or of the
    gateway's aggregate count: the end of the span the CPU figures cover."""
    last: Snapshot
    peak_rss: int | None
    outcome: str = "complete"
    """``complete``, ``stopped short`` (still for ``still_s`` past the expected close),
    ``timeout`` or ``peer exited``."""
    samples: list[Snapshot] = field(default_factory=list)


def watch_aggregates(
    influxd: Influxd,
    influxd_tree: ProcessTree,
    peer: ProcessTree,
    *,
    after: Snapshot,
    written: Callable[[], float | None],
    expected: int,
    close_by: float,
    still_s: float = 35.0,
    timeout_s: float = 240.0,
    interval_s: float = 0.5,
) -> AggregatesDone:
    """Sample until the gateway has written ``expected`` aggregates, or gave up growing.

    ``after`` is the last sample of the readings' wait; ``close_by`` the monotonic time
    by which the last window should have closed. The wait gives up once past
    ``close_by`` with neither count having moved for ``still_s``, or after ``timeout_s``.
    """
    samples = [after]
    end = after
    prev = after
    peak = after.peer_rss
    outcome = "stopped short"
    deadline = max(after.t, close_by) + timeout_s
    while True:
        snap = take_snapshot(influxd, influxd_tree, peer, written)
        samples.append(snap)
        if snap.peer_rss is not None:
            peak = max(peak or 0, snap.peer_rss)
        # ``after`` carries the readings' count, not the aggregates': compare points only.
        moved = snap.point_req != prev.point_req
        if prev is not after and snap.claimed != prev.claimed:
            moved = True
        if moved:
            end = snap
        prev = snap
        if snap.claimed is not None and snap.claimed >= expected:
            outcome = "complete"
            break
        if snap.t >= close_by and snap.t - end.t >= still_s:
            break
        if snap.t >= deadline:
            outcome = "timeout"
            break
        if not peer.alive():
            outcome = "peer exited"
            break
        time.sleep(interval_s)
    return AggregatesDone(
        expected=expected,
        written=prev.claimed,
        end=end,
        last=prev,
        peak_rss=peak,
        outcome=outcome,
        samples=samples,
    )
