"""Time the shards' recovery snapshot, per component, on the bench's workload.

Feeds the ``peer`` burst of ``sensorgate bench`` (1,000 devices x 50 sensors, 10
metrics, 50 readings per message; default rules and settings unless told) to the
shards of one gateway (:class:`~dataflows.shard.ShardProcessor`, routed as the flow
routes), in source-sized batches, then takes each shard's snapshot as the flow hands it
to Bytewax at an epoch's end and pickles it as Bytewax does (``pickle.dumps`` with the
default protocol, 4 on Python 3.11). It prints, per component of the state: the time
to build it, the time to serialise it, its bytes, the GC-tracked objects the build
allocates (what drives Python's cyclic collector), and the allocation peak of the two
steps (tracemalloc, which numpy reports its arrays to).

It runs against the code in the current directory, before or after the snapshot blobs
(:mod:`dataflows.snapshot_blob`): without them, a component is its plain-data snapshot
pickled by Bytewax; with them, the live arrays encoded into a blob, then pickled.

``--flow`` also runs the same burst through the whole flow (``build_flow`` under
Bytewax's ``run_main``, one source batch per epoch) with recovery on and then off, and
prints the process CPU and wall time of each: their difference per epoch is what
recovery costs with Bytewax's side counted (its pickling of what the shard hands it,
its SQLite writes and checkpoints).

Not a test and not part of the product: a probe for the snapshot's cost. Run it from
the repository's root::

    python scripts/snapshot_probe.py [--readings 1000000] [--rules FILE] [--flow] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path.cwd()))

from dataflows.batch import MessageBatch, ShardRouter
from dataflows.rules import StaticRules, load_rules
from dataflows.shard import ShardProcessor
from gateway.app import _stream_config
from gateway.bench.workload import Workload, render_burst
from gateway.settings import load_settings

try:
    from dataflows import snapshot_blob
except ImportError:  # the code before the blobs
    snapshot_blob = None  # type: ignore[assignment]

_BATCH = 1_600
"""Messages per source batch (about what the MQTT source hands over under a burst)."""
_OWNERS = {
    "registry": "registry",
    "windows": "windows",
    "series_alarms": "series_alarms",
    "detectors": "device_rules",
    "active": "summaries",
    "adapters": "adapters",
}


def _batches(readings: int) -> list[MessageBatch]:
    """Return the burst as source batches (arrival: now)."""
    workload = Workload(total=readings)
    # The burst's event times end 5 s before now: start it late enough in a minute that
    # it stays inside that minute, so every series holds one open 1 min window in
    # every run (two when it crosses a minute: twice the window state).
    span_s = workload.messages_per_device + 5
    second = time.time() % 60
    if second < span_s:
        time.sleep(span_s - second + 0.5)
    burst = render_burst(workload)
    now = time.time_ns() // 1_000
    out = []
    for lo in range(0, len(burst.payloads), _BATCH):
        topics = burst.topics[lo : lo + _BATCH]
        out.append(MessageBatch(topics, burst.payloads[lo : lo + _BATCH], [now] * len(topics)))
    return out


def _shards(readings: int, rules: Path | None) -> list[ShardProcessor]:
    settings = load_settings()
    config = _stream_config(settings)
    ruleset = StaticRules(load_rules(rules))
    shards = [
        ShardProcessor(topics=settings.topics, config=config, rules=ruleset)
        for _ in range(config.shards)
    ]
    router = ShardRouter(config.shards)
    t0 = time.perf_counter()
    for batch in _batches(readings):
        for key, part in router.split(batch):
            shards[int(key.rsplit("-", 1)[1])].process([part])
    print(
        f"fed {readings:,} readings to {len(shards)} shards in {time.perf_counter() - t0:.1f} s"
        f" ({sum(s.registry.series_count for s in shards):,} series)",
        file=sys.stderr,
    )
    return shards


def _steps(
    shard: ShardProcessor, name: str | None
) -> tuple[Callable[[], Any], Callable[[Any], Any]]:
    """Return how the flow builds a state, and what it hands Bytewax for it.

    ``name`` is a component (None: the whole shard); what Bytewax gets is the state
    itself, or its blob.
    """
    if name is None:
        owner: Any = shard
    else:
        owner = getattr(shard, _OWNERS[name])
    if owner is None:
        return (lambda: None), (lambda state: state)
    if snapshot_blob is None:
        return owner.snapshot, (lambda state: state)
    try:
        owner.snapshot(copy=False)
        build = lambda: owner.snapshot(copy=False)  # noqa: E731
    except TypeError:  # a component without views
        build = owner.snapshot
    return build, snapshot_blob.encode


def _one(build: Callable[[], Any], serialise: Callable[[Any], Any]) -> tuple[float, ...]:
    """Once: (build s, serialise + pickle s, bytes, GC-tracked objects the build made)."""
    gc.collect()
    gc.disable()
    before = gc.get_count()[0]
    t0 = time.perf_counter()
    state = build()
    t1 = time.perf_counter()
    tracked = gc.get_count()[0] - before
    blob = pickle.dumps(serialise(state))  # Bytewax's call: the default protocol
    t2 = time.perf_counter()
    del state
    gc.enable()
    return t1 - t0, t2 - t1, len(blob), tracked


def _peak(build: Callable[[], Any], serialise: Callable[[Any], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    blob = pickle.dumps(serialise(build()))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del blob
    return peak


def _measure(shards: list[ShardProcessor], name: str | None, rounds: int) -> dict[str, float]:
    """Sum over shards of one component (or all: None); times are medians of rounds."""
    builds, pickles = [], []
    size = tracked = 0
    for _ in range(rounds):
        b = p = 0.0
        size = tracked = 0
        for shard in shards:
            tb, tp, n, objects = _one(*_steps(shard, name))
            b, p, size, tracked = b + tb, p + tp, size + int(n), tracked + int(objects)
        builds.append(b)
        pickles.append(p)
    peaks = [_peak(*_steps(shard, name)) for shard in shards]
    return {
        "build_ms": statistics.median(builds) * 1e3,
        "pickle_ms": statistics.median(pickles) * 1e3,
        "total_ms": statistics.median(b + p for b, p in zip(builds, pickles, strict=True)) * 1e3,
        "bytes": size,
        "gc_objects": tracked,
        "peak_sum": sum(peaks),
        "peak_max": max(peaks),
    }


def _flow(readings: int, rules: Path | None, recovery: bool) -> dict[str, float]:
    """Run the burst through the whole flow, one batch per epoch; CPU and wall seconds."""
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.testing import TestingSink, TestingSource, run_main

    from dataflows.flow import build_flow

    settings = load_settings()
    batches = _batches(readings)
    flow = build_flow(
        TestingSource(batches),
        topics=settings.topics,
        points_sink=TestingSink([]),
        deadletter_sink=TestingSink([]),
        rules=StaticRules(load_rules(rules)),
        stream=_stream_config(settings),
        recovery=recovery,
    )
    with tempfile.TemporaryDirectory(prefix="snapshot-probe-") as folder:
        config = None
        if recovery:
            init_db_dir(folder, 1)
            config = RecoveryConfig(folder)
        gc.collect()
        before = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        run_main(flow, epoch_interval=timedelta(0), recovery_config=config)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {"epochs": len(batches), "cpu_s": cpu, "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    """Run the probe; print the table (and write JSON when asked)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--rules", type=Path, default=None, help="rules file (default rules)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per figure (median)")
    parser.add_argument("--flow", action="store_true", help="also time the whole flow")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    shards = _shards(args.readings, args.rules)
    rows = {name: _measure(shards, name, args.rounds) for name in _OWNERS}
    rows["(whole shard)"] = _measure(shards, None, args.rounds)
    blobs = "snapshot blobs" if snapshot_blob is not None else "plain data (no blobs)"
    print(f"\n{len(shards)} shards, {blobs}; sums over shards, times: median of {args.rounds}")
    print(
        f"{'component':<16} {'build ms':>9} {'serialise ms':>12} {'total ms':>9} {'MB':>7}"
        f" {'GC objects':>11} {'alloc peak MB':>14}"
    )
    for name, r in rows.items():
        print(
            f"{name:<16} {r['build_ms']:9.1f} {r['pickle_ms']:12.1f} {r['total_ms']:9.1f}"
            f" {r['bytes'] / 1e6:7.2f} {r['gc_objects']:11,d} {r['peak_sum'] / 1e6:14.2f}"
        )
    print(f"largest shard's allocation peak: {rows['(whole shard)']['peak_max'] / 1e6:.2f} MB")
    flow: dict[str, dict[str, float]] = {}
    if args.flow:
        for recovery in (True, False):
            flow["on" if recovery else "off"] = run = _flow(args.readings, args.rules, recovery)
            print(
                f"flow, recovery {'on ' if recovery else 'off'}: {run['epochs']} epochs,"
                f" CPU {run['cpu_s']:.2f} s, wall {run['wall_s']:.2f} s"
            )
        epochs = flow["on"]["epochs"]
        print(
            "recovery per epoch (8 shards, Bytewax's side included):"
            f" CPU {(flow['on']['cpu_s'] - flow['off']['cpu_s']) / epochs * 1e3:.0f} ms,"
            f" wall {(flow['on']['wall_s'] - flow['off']['wall_s']) / epochs * 1e3:.0f} ms"
        )
    if args.json is not None:
        doc = {"blobs": snapshot_blob is not None, "rows": rows, "flow": flow}
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
