"""What ``sensorgate bench-cluster`` measured: per process count and round, and summaries.

Pure data and arithmetic, no I/O: :mod:`gateway.bench.scaling` runs the rounds and
fills these; the tests build them from made-up figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.bench.results import spread

if TYPE_CHECKING:
    from gateway.bench.measure import Completion, Snapshot

__all__ = [
    "RECEIVED_METRIC",
    "ProcessFigures",
    "ScalingReport",
    "ScalingRound",
    "fill_scaling_round",
    "summarize_scaling",
]

RECEIVED_METRIC = "sensorgate_mqtt_received_messages_total"


@dataclass
class ProcessFigures:
    """One gateway process in one round."""

    index: int
    cpu_s: float
    received_messages: int
    """Taken off the broker by this process's MQTT partition(s)."""
    decoded_messages: int
    decoded_readings: int
    """Decoded here: the devices whose shard this process holds."""
    stored: int = 0
    """Readings the whole cluster stored in the round (for the per-reading share)."""
    idle_cpu_share: float | None = None
    """Share of one core this process used while idle, before the burst."""

    @property
    def cpu_us_per_reading(self) -> float | None:
        """Return the process's CPU over the burst per reading the cluster stored (µs)."""
        if not self.stored:
            return None
        return round(self.cpu_s * 1e6 / self.stored, 2)

    @property
    def cpu_us_per_decoded_reading(self) -> float | None:
        """Return the process's CPU per reading it decoded (µs)."""
        if not self.decoded_readings:
            return None
        return round(self.cpu_s * 1e6 / self.decoded_readings, 2)

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as a JSON-ready dict."""
        return {
            **asdict(self),
            "cpu_us_per_reading": self.cpu_us_per_reading,
            "cpu_us_per_decoded_reading": self.cpu_us_per_decoded_reading,
        }


@dataclass
class ScalingRound:
    """One process count, one round."""

    processes: int
    round: int
    expected: int
    stored: int | None = None
    outcome: str = "settled"
    seconds: float | None = None
    """From the first publish to the last reading stored."""
    readings_per_s: float | None = None
    gateway_cpu_s: float | None = None
    """All gateway processes together, over the burst."""
    supervisor_cpu_s: float | None = None
    influxd_cpu_s: float | None = None
    mosquitto_cpu_s: float | None = None
    per_process: list[ProcessFigures] = field(default_factory=list)
    error: str | None = None

    @property
    def gateway_cpu_us_per_reading(self) -> float | None:
        """The cluster's CPU per reading stored (µs): the figure that plans cores."""
        if self.gateway_cpu_s is None or not self.stored:
            return None
        return round(self.gateway_cpu_s * 1e6 / self.stored, 2)

    def as_dict(self) -> dict[str, Any]:
        """Return the round as a JSON-ready dict."""
        out = asdict(self)
        out["per_process"] = [p.as_dict() for p in self.per_process]
        out["gateway_cpu_us_per_reading"] = self.gateway_cpu_us_per_reading
        return out


@dataclass
class ScalingReport:
    """Every round, the summaries per process count, and where it ran."""

    started_at: str
    command: str
    workload: dict[str, Any]
    rounds: int
    workers: int
    storage_only: bool
    process_counts: list[int]
    machine: dict[str, Any]
    versions: dict[str, str]
    results: list[ScalingRound] = field(default_factory=list)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    finished_at: str = ""
    wall_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        out = asdict(self)
        out["results"] = [r.as_dict() for r in self.results]
        return out


def _median(values: Sequence[float | None], digits: int = 2) -> dict[str, float | None]:
    mid, low, high = spread(values)
    if mid is None or low is None or high is None:
        return {"median": None, "min": None, "max": None}
    return {"median": round(mid, digits), "min": round(low, digits), "max": round(high, digits)}


def summarize_scaling(results: Sequence[ScalingRound]) -> list[dict[str, Any]]:
    """Median (min, max) per process count over its rounds; the lost readings summed."""
    out = []
    for n in sorted({r.processes for r in results}):
        rounds = [r for r in results if r.processes == n]
        good = [r for r in rounds if r.error is None]
        per_process: list[dict[str, Any]] = []
        for i in range(n):
            figures = [r.per_process[i] for r in good if len(r.per_process) > i]
            per_process.append(
                {
                    "index": i,
                    "idle_cpu_share": _median([f.idle_cpu_share for f in figures], 4),
                    "cpu_us_per_reading": _median([f.cpu_us_per_reading for f in figures]),
                    "cpu_us_per_decoded_reading": _median(
                        [f.cpu_us_per_decoded_reading for f in figures]
                    ),
                    "received_share": _median(
                        [_share(f.received_messages, r, "received_messages") for f, r in
                         zip(figures, good, strict=True)]
                    ),
                    "decoded_share": _median(
                        [_share(f.decoded_readings, r, "decoded_readings") for f, r in
                         zip(figures, good, strict=True)]
                    ),
                }
            )  # fmt: skip
        out.append(
            {
                "processes": n,
                "rounds": len(rounds),
                "failed": len(rounds) - len(good),
                "lost": sum(r.expected - (r.stored or 0) for r in rounds),
                "readings_per_s": _median([r.readings_per_s for r in good]),
                "gateway_cpu_us_per_reading": _median([r.gateway_cpu_us_per_reading for r in good]),
                "influxd_cpu_us_per_reading": _median(
                    [_per_reading(r.influxd_cpu_s, r.stored) for r in good]
                ),
                "mosquitto_cpu_us_per_reading": _median(
                    [_per_reading(r.mosquitto_cpu_s, r.stored) for r in good]
                ),
                "per_process": per_process,
            }
        )
    return out


def _share(value: int, r: ScalingRound, name: str) -> float | None:
    total = sum(getattr(p, name) for p in r.per_process)
    return round(value / total, 3) if total else None


def _per_reading(cpu_s: float | None, stored: int | None) -> float | None:
    return None if cpu_s is None or not stored else cpu_s * 1e6 / stored


def fill_scaling_round(
    result: ScalingRound,
    start: Snapshot,
    completion: Completion,
    done: dict[str, Any],
    by_total: dict[float, list[float]],
    scrapes: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    idle: list[float],
) -> None:
    """Fill ``result`` from the burst, the publisher's report and the processes' metrics.

    ``scrapes`` are each process's metrics before and after; ``result.stored`` is
    counted already. ``by_total`` maps each total CPU a sample read to the processes' own figures
    (:class:`~gateway.bench.scaling_cluster.ClusterTree`).
    """
    result.outcome = completion.outcome
    stored = result.stored or 0
    end = completion.end
    if end is not completion.start:
        result.seconds = round(end.t - float(done["first_publish"]), 3)
        if result.seconds > 0:
            result.readings_per_s = round(min(stored, result.expected) / result.seconds, 1)
        result.influxd_cpu_s = round(end.influxd_cpu_s - start.influxd_cpu_s, 3)
        result.gateway_cpu_s = round((end.peer_cpu_s or 0.0) - (start.peer_cpu_s or 0.0), 3)
    before, after = scrapes
    n = len(before)
    each0 = by_total.get(start.peer_cpu_s or 0.0, [0.0] * n)
    each1 = by_total.get(end.peer_cpu_s or 0.0, each0)
    for i in range(n):

        def delta(name: str, i: int = i) -> int:
            return int(float(after[i].get(name, 0.0)) - float(before[i].get(name, 0.0)))

        result.per_process.append(
            ProcessFigures(
                index=i,
                cpu_s=round(each1[i] - each0[i], 3),
                received_messages=delta(RECEIVED_METRIC),
                decoded_messages=delta("sensorgate_messages_in_total"),
                decoded_readings=delta("sensorgate_readings_in_total"),
                stored=stored,
                idle_cpu_share=idle[i] if idle else None,
            )
        )
    if not done.get("all_acknowledged", False):
        result.error = "the broker did not acknowledge every message of the burst"
    if completion.outcome != "settled":
        result.error = f"the burst did not settle: {completion.outcome}"
