"""What ``sensorgate bench-adapters`` measured, summarized per dialect.

Pure data and arithmetic, no I/O. The rounds are :class:`~gateway.bench.results.RoundResult`
(``peer`` = the dialect) inside a :class:`~gateway.bench.results.BenchReport`; this
module adds the per-dialect figures the adapters table shows: readings/s per core (the
expected readings over the gateway's CPU seconds) and its ratio to the native baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.bench.results import BenchReport, RoundResult, Spread, spread

__all__ = ["AdaptersReport", "DialectSummary", "Spread", "per_core", "summarize_dialects"]

BASELINE = "native"


def per_core(result: RoundResult) -> float | None:
    """Return readings per gateway CPU second (expected readings / its CPU seconds)."""
    if result.peer_cpu_s is None or result.peer_cpu_s <= 0 or result.stored is None:
        return None
    return result.expected / result.peer_cpu_s


@dataclass
class DialectSummary:
    """One dialect over all its rounds: median (min, max) of each figure."""

    dialect: str
    label: str
    rounds: int
    readings_per_message: int | None
    messages: int | None
    """Messages per round, status messages (availability, LWT...) included."""
    expected: int
    """Readings published over all rounds."""
    stored: int | None
    """Readings stored over all rounds (None if a round failed to count)."""
    rate: Spread = (None, None, None)
    """End-to-end readings/s: first publish to last reading stored."""
    gateway_cpu_s_per_m: Spread = (None, None, None)
    per_core: Spread = (None, None, None)
    """Readings/s per core of the gateway: 1e6 / gateway CPU seconds per million."""
    influxd_cpu_s_per_m: Spread = (None, None, None)
    per_core_to_native: float | None = None
    """Median readings/s per core / the native baseline's."""
    deadletters: float = 0.0
    """Messages the gateway rejected over all rounds (should be 0)."""
    errors: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int | None:
        """Readings not stored over all rounds."""
        return None if self.stored is None else self.expected - self.stored


def summarize_dialects(
    results: Sequence[RoundResult], labels: dict[str, str]
) -> list[DialectSummary]:
    """Summarize ``results`` per dialect, in the order the dialects first appear."""
    order = list(dict.fromkeys(r.peer for r in results))
    out: list[DialectSummary] = []
    for dialect in order:
        rounds = [r for r in results if r.peer == dialect]
        stored = [r.stored for r in rounds]
        first = rounds[0].extras
        out.append(
            DialectSummary(
                dialect=dialect,
                label=labels.get(dialect, dialect),
                rounds=len(rounds),
                readings_per_message=first.get("readings_per_message"),
                messages=first.get("messages"),
                expected=sum(r.expected for r in rounds),
                stored=None if any(v is None for v in stored) else sum(v or 0 for v in stored),
                rate=spread([r.readings_per_s for r in rounds]),
                gateway_cpu_s_per_m=spread([r.peer_cpu_s_per_m for r in rounds]),
                per_core=spread([per_core(r) for r in rounds]),
                influxd_cpu_s_per_m=spread([r.influxd_cpu_s_per_m for r in rounds]),
                deadletters=sum(float(r.extras.get("deadletters") or 0.0) for r in rounds),
                errors=[f"round {r.round}: {r.error}" for r in rounds if r.error],
            )
        )
    base = next((s for s in out if s.dialect == BASELINE), None)
    if base is not None and base.per_core[0]:
        for s in out:
            if s.per_core[0] is not None:
                s.per_core_to_native = s.per_core[0] / base.per_core[0]
    return out


@dataclass
class AdaptersReport:
    """The whole run: the rounds (a :class:`BenchReport`) and the per-dialect summary."""

    bench: BenchReport
    dialects: list[DialectSummary] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Return the report, JSON-ready (the bench report's keys plus ``dialects``)."""
        out = self.bench.as_dict()
        out.pop("summaries", None)  # the peer summaries' Node-RED ratios mean nothing here
        out["dialects"] = [{**asdict(s), "lost": s.lost} for s in self.dialects]
        return out
