"""``sensorgate bench-alarms``'s pure parts: quantiles against the target, the CLI."""

from __future__ import annotations

import pytest

from gateway.bench.alarms import TARGET_P99_S, _quantiles
from gateway.cli import build_parser


def test_quantiles_are_nearest_rank_and_count_the_target() -> None:
    samples = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    q = _quantiles([*samples[50:], *samples[:50]])
    assert (q["p50"], q["p90"], q["p99"], q["max"]) == (0.05, 0.09, 0.099, 0.1)
    assert q["count"] == 100
    assert q["within_0_5s"] == q["within_1s"] == 100
    slow = _quantiles([0.1, 0.2, 0.6, 1.5])
    assert slow["within_0_5s"] == 2
    assert slow["within_1s"] == 3
    assert slow["p99"] == 1.5 > TARGET_P99_S


def test_bench_alarms_has_help_and_defaults() -> None:
    args = build_parser().parse_args(["bench-alarms"])
    assert (args.rate, args.crossings, args.out) == (10_000, 80, "reports/bench-alarms.json")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench-alarms", "--help"])


def test_every_probe_crossing_raises_an_alarm() -> None:
    # 80 crossings within minutes: neither flapping nor the raise rate limit may hold
    # one back, or the bench measures the limiter instead of the latency.
    import tomllib

    from contract.alarms import AlarmRaisedEvent
    from dataflows.alarms import AlarmKey, AlarmMachine
    from dataflows.detectors import Signal
    from dataflows.rules import parse_rules
    from gateway.bench.alarms import _PROBE_RULES

    rule = parse_rules(tomllib.loads(_PROBE_RULES)).by_id["probe-high"]
    machine = AlarmMachine(AlarmKey("bench", "probe", "p", "level", rule.id), rule.policy())
    raised = 0
    for i in range(80):
        t = i * 60_000_000  # a crossing a minute, cleared 30 s later (the bench: faster)
        events = machine.update(t, Signal(True, 150.0, 100.0))
        raised += sum(isinstance(e, AlarmRaisedEvent) for e in events)
        machine.update(t + 30_000_000, Signal(False, 10.0, 50.0))
    assert raised == 80
