"""Time the shard step per reading when the same messages come in small or large batches.

A paced load hands each shard a few messages per call, a burst hundreds: what a call
costs whatever it carries decides the CPU per reading of a fleet that is not bursting.
This feeds the bench's burst (``--devices`` x ``--sensors`` series, 50 readings per
message, default rules and settings) to the shards of one gateway
(:class:`~dataflows.shard.ShardProcessor`, routed as the flow routes), one round of the
fleet (one message per device) at a time: two rounds to warm up, then one round per
batch size, cut into source batches of that many messages. It prints the process CPU
per reading and per shard call for each, twice, alternating sizes.

Not a test and not part of the product: a probe. Run it from the repository's root::

    python scripts/call_cost_probe.py [--devices 10000] [--sensors 10] [--sizes 1600,200,50]
        [--profile cumulative]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

from dataflows.batch import MessageBatch, ShardRouter
from dataflows.rules import StaticRules, load_rules
from dataflows.shard import ShardProcessor
from gateway.app import _stream_config
from gateway.bench.workload import Workload, render_burst
from gateway.settings import load_settings

_WARM_ROUNDS = 2


class _Feeder:
    """The shards of one gateway and the burst's messages, one round per device."""

    def __init__(self, devices: int, sensors: int, rounds: int) -> None:
        settings = load_settings()
        config = _stream_config(settings)
        rules = StaticRules(load_rules(None))
        self.shards = [
            ShardProcessor(topics=settings.topics, config=config, rules=rules)
            for _ in range(config.shards)
        ]
        self.router = ShardRouter(config.shards)
        workload = Workload(
            devices=devices, sensors_per_device=sensors, total=devices * 50 * rounds
        )
        burst = render_burst(workload)
        messages = list(zip(burst.topics, burst.payloads, strict=True))
        self.rounds = [messages[i : i + devices] for i in range(0, len(messages), devices)]
        self.readings_per_message = workload.readings_per_message

    def feed(self, messages: list[tuple[str, bytes]], size: int) -> int:
        """Feed ``messages`` in source batches of ``size``; return the shard calls made."""
        now = time.time_ns() // 1000
        calls = 0
        for lo in range(0, len(messages), size):
            chunk = messages[lo : lo + size]
            batch = MessageBatch([t for t, _ in chunk], [p for _, p in chunk], [now] * len(chunk))
            for key, part in self.router.split(batch):
                self.shards[int(key.rsplit("-", 1)[1])].process([part])
                calls += 1
        return calls


def main(argv: list[str] | None = None) -> int:
    """Run the probe; print CPU per reading and per call for each batch size."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--sensors", type=int, default=10, help="series per device")
    parser.add_argument(
        "--sizes", default="1600,200,50", help="messages per source batch, comma-separated"
    )
    parser.add_argument(
        "--profile", default=None, help="cProfile the smallest size, sorted by this key"
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    feeder = _Feeder(args.devices, args.sensors, _WARM_ROUNDS + 2 * len(sizes) + 1)
    for messages in feeder.rounds[:_WARM_ROUNDS]:
        feeder.feed(messages, 1_600)
    rounds = iter(feeder.rounds[_WARM_ROUNDS:])
    print(f"{args.devices:,} devices x {args.sensors} series, default rules")
    print(f"{'batch':>6} {'µs per reading':>15} {'ms per shard call':>18}")
    for size in sizes * 2:
        messages = next(rounds)
        cpu = time.process_time()
        calls = feeder.feed(messages, size)
        cpu = time.process_time() - cpu
        readings = len(messages) * feeder.readings_per_message
        print(f"{size:6d} {cpu / readings * 1e6:15.2f} {cpu / calls * 1e3:18.2f}")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        feeder.feed(next(rounds), min(sizes))
        profiler.disable()
        pstats.Stats(profiler).sort_stats(args.profile).print_stats(40)
    return 0


if __name__ == "__main__":
    sys.exit(main())
