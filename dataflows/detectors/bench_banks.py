"""Benchmark: CPU per reading of the detector banks against the scalar detectors.

Run ``python -m dataflows.detectors.bench_banks`` (``--help`` for the sizes). Every slot
gets a noisy series, one reading a second; the detectors are warmed up first (not
timed), then ``--rounds`` rounds of one reading per slot are timed: the bank in one
``update`` call per round, the scalar detectors one ``update`` call per reading (on
``--scalar-slots`` slots, enough for a stable figure). Prints microseconds per reading
(CPU time of this process) and writes them as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from contract.alarms import Severity
from dataflows.detectors.adaptive import AdaptiveDetector
from dataflows.detectors.adaptive_bank import AdaptiveBank
from dataflows.detectors.anomaly import AnomalyDetector
from dataflows.detectors.anomaly_bank import AnomalyBank
from dataflows.detectors.threshold import ThresholdDetector
from dataflows.detectors.threshold_bank import ThresholdBank

__all__ = ["main"]

_S = 1_000_000
_T0 = 1_780_000_000 * _S


def _values(rng: np.random.Generator, slots: int, rounds: int) -> np.ndarray:
    level = rng.uniform(0, 100, slots)
    return level[None, :] + rng.normal(0, 1, (rounds, slots))


def _bank_us(bank: Any, values: np.ndarray, warm: int) -> float:
    """Feed every round; return CPU microseconds per reading of the rounds after ``warm``."""
    rounds, slots = values.shape
    bank.grow(slots)
    ids = np.arange(slots, dtype=np.int64)
    spent = 0.0
    for r in range(rounds):
        t = np.full(slots, _T0 + r * _S, np.int64)
        start = time.process_time()
        bank.update(ids, t, values[r])
        if r >= warm:
            spent += time.process_time() - start
    return float(spent * 1e6 / ((rounds - warm) * slots))


def _scalar_us(make: Callable[[], Any], values: np.ndarray, warm: int) -> float:
    """Feed each slot's detector its readings; return CPU microseconds per timed reading."""
    rounds, slots = values.shape
    detectors = [make() for _ in range(slots)]
    rows = values.tolist()
    spent = 0.0
    for r in range(rounds):
        t = _T0 + r * _S
        start = time.process_time()
        for detector, v in zip(detectors, rows[r], strict=True):
            detector.update(t, v)
        if r >= warm:
            spent += time.process_time() - start
    return float(spent * 1e6 / ((rounds - warm) * slots))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds")
    parser.add_argument("--scalar-slots", type=int, default=5_000)
    parser.add_argument("--warmup", type=int, default=60, help="the adaptive warmup (untimed)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(1)
    warm = args.warmup + 1
    total = warm + args.rounds
    values = _values(rng, args.slots, total)
    scalar_values = values[:, : args.scalar_slots]
    levels = [(60.0, Severity.WARNING), (90.0, Severity.MAJOR)]

    figures = {
        "slots": args.slots,
        "rounds": args.rounds,
        "scalar_slots": args.scalar_slots,
        "adaptive_bank_us": _bank_us(AdaptiveBank(warmup=args.warmup), values, warm),
        "adaptive_scalar_us": _scalar_us(
            lambda: AdaptiveDetector(warmup=args.warmup), scalar_values, warm
        ),
        "adaptive_no_seasons_bank_us": _bank_us(
            AdaptiveBank(warmup=args.warmup, season_buckets=0), values, warm
        ),
        "adaptive_no_seasons_scalar_us": _scalar_us(
            lambda: AdaptiveDetector(warmup=args.warmup, season_buckets=0), scalar_values, warm
        ),
        "anomaly_bank_us": _bank_us(AnomalyBank(warmup=args.warmup), values, warm),
        "anomaly_scalar_us": _scalar_us(
            lambda: AnomalyDetector(warmup=args.warmup), scalar_values, warm
        ),
        "threshold_bank_us": _bank_us(ThresholdBank(levels=levels, clear=55.0), values, warm),
        "threshold_scalar_us": _scalar_us(
            lambda: ThresholdDetector(levels=levels, clear=55.0), scalar_values, warm
        ),
    }
    print(f"{args.slots:,} slots x {args.rounds} rounds (scalar: {args.scalar_slots:,} slots)")
    print("us of CPU per reading after warmup (one reading a second; seasons: 24 a day)")
    for kind in ("adaptive", "adaptive_no_seasons", "anomaly", "threshold"):
        bank, scalar = figures[f"{kind}_bank_us"], figures[f"{kind}_scalar_us"]
        print(f"  {kind:<19}  bank {bank:6.3f}   scalar {scalar:6.3f}   x{scalar / bank:,.0f}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
