"""What ``sensorgate bench`` measured: one result per peer and round, summaries per peer.

Pure data and arithmetic, no I/O: the report (table, JSON, chart) is built from these,
and the tests build them from made-up figures.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BenchReport", "PeerSummary", "RoundResult", "Spread", "spread", "summarize"]

Spread = tuple[float | None, float | None, float | None]
"""Median, lowest and highest of a figure over rounds (all None when no round had it)."""


@dataclass
class RoundResult:
    """One peer, one round."""

    peer: str
    round: int
    expected: int
    """Readings published (points posted, for the influxd ceiling)."""
    stored: int | None = None
    """``count("value")`` of ``readings`` at the end; None if the round failed before."""
    outcome: str = "settled"
    """How the wait ended: ``settled``, ``timeout``, ``nothing stored``, ``peer exited``,
    ``failed``."""
    seconds: float | None = None
    """From the first publish to the last point stored."""
    readings_per_s: float | None = None
    """End-to-end: expected / seconds."""
    peer_cpu_s: float | None = None
    """CPU (user + system) of the peer's whole process tree over ``seconds``."""
    influxd_cpu_s: float | None = None
    cpu_span: str = "readings"
    """What the CPU figures cover, from the start of the burst: ``readings`` (to the last
    reading stored) or ``readings+aggregates`` (the sensorgate peers: to the last
    aggregate stored, or to the wait's end if some never came)."""
    cpu_seconds: float | None = None
    """The length of that span."""
    aggregates_expected: int | None = None
    """Aggregates the gateway owes for the burst (sensorgate peers)."""
    aggregates_written: int | None = None
    """Aggregates it said it stored by the end of the wait."""
    aggregates_outcome: str | None = None
    """How the wait for them ended: ``complete``, ``stopped short``, ``timeout``,
    ``peer exited``."""
    peak_rss_mb: float | None = None
    publish_s: float | None = None
    """How long the publisher took to hand over the burst (until the last PUBACK)."""
    points_written: int | None = None
    """Points influxd was asked to write (all measurements, retries included)."""
    write_requests: int | None = None
    influxd_server_errors: int | None = None
    """HTTP 5xx answers influxd gave during the round."""
    error: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    """Peer-specific figures: the gateway's sustained rate and latency, the MQTT share."""

    @property
    def lost(self) -> int | None:
        """Readings not stored (negative would mean more stored than published)."""
        return None if self.stored is None else self.expected - self.stored

    @property
    def aggregates_missing(self) -> int | None:
        """Aggregates owed but not written (None where the peer writes none)."""
        if self.aggregates_expected is None or self.aggregates_written is None:
            return None
        return self.aggregates_expected - self.aggregates_written

    @property
    def complete(self) -> bool:
        """Whether every reading was stored and nothing went wrong."""
        return self.error is None and self.stored == self.expected

    @property
    def peer_cpu_s_per_m(self) -> float | None:
        """Peer CPU seconds per million readings."""
        return _per_million(self.peer_cpu_s, self.expected)

    @property
    def influxd_cpu_s_per_m(self) -> float | None:
        """CPU seconds of influxd per million readings."""
        return _per_million(self.influxd_cpu_s, self.expected)

    def as_dict(self) -> dict[str, Any]:
        """Return the result with its derived figures, JSON-ready."""
        return {
            **asdict(self),
            "lost": self.lost,
            "aggregates_missing": self.aggregates_missing,
            "peer_cpu_s_per_m": _round(self.peer_cpu_s_per_m, 3),
            "influxd_cpu_s_per_m": _round(self.influxd_cpu_s_per_m, 3),
        }


def _per_million(value: float | None, count: int) -> float | None:
    return None if value is None or count <= 0 else value * 1e6 / count


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class PeerSummary:
    """A peer over all its rounds."""

    peer: str
    label: str
    rounds: int
    expected: int
    """Readings published over all rounds."""
    stored: int | None
    """Readings stored over all rounds (None if any round failed to count)."""
    complete_rounds: int
    rate_median: float | None = None
    rate_min: float | None = None
    rate_max: float | None = None
    peer_cpu_s_per_m: float | None = None
    peer_cpu_s_per_m_min: float | None = None
    peer_cpu_s_per_m_max: float | None = None
    influxd_cpu_s_per_m: float | None = None
    influxd_cpu_s_per_m_min: float | None = None
    influxd_cpu_s_per_m_max: float | None = None
    cpu_spans: list[str] = field(default_factory=list)
    """What the CPU figures of its rounds cover (``RoundResult.cpu_span``)."""
    aggregates_expected: int | None = None
    """Aggregates owed over all rounds (None where the peer writes none)."""
    aggregates_written: int | None = None
    mqtt_client_cpu_share: float | None = None
    """Median share of the peer's CPU spent in the gateway's MQTT client threads."""
    peak_rss_mb: float | None = None
    fraction_of_ceiling: float | None = None
    """Median rate / the influxd ceiling's median rate."""
    ratio_to_nodered: float | None = None
    """Median rate / Node-RED's median rate."""
    influxd_cpu_to_nodered: float | None = None
    """Median influxd CPU per million readings / Node-RED's (the issue's target: at most
    1.3 for the gateway, aggregates included)."""
    errors: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int | None:
        """Readings not stored over all rounds."""
        return None if self.stored is None else self.expected - self.stored

    @property
    def aggregates_missing(self) -> int | None:
        """Aggregates owed but not written over all rounds."""
        if self.aggregates_expected is None or self.aggregates_written is None:
            return None
        return self.aggregates_expected - self.aggregates_written


def spread(values: Sequence[float | None]) -> Spread:
    """Return the median, min and max of the values that are not None."""
    got = [v for v in values if v is not None]
    if not got:
        return None, None, None
    return statistics.median(got), min(got), max(got)


def summarize(
    results: Sequence[RoundResult],
    labels: dict[str, str],
    *,
    ceiling: str = "influxd",
    reference: str = "nodered",
) -> list[PeerSummary]:
    """Summarize ``results`` per peer, in the order the peers first appear."""
    order = list(dict.fromkeys(r.peer for r in results))
    summaries: dict[str, PeerSummary] = {}
    for peer in order:
        rounds = [r for r in results if r.peer == peer]
        stored = [r.stored for r in rounds]
        s = PeerSummary(
            peer=peer,
            label=labels.get(peer, peer),
            rounds=len(rounds),
            expected=sum(r.expected for r in rounds),
            stored=None if any(v is None for v in stored) else sum(v or 0 for v in stored),
            complete_rounds=sum(1 for r in rounds if r.complete),
            errors=[f"round {r.round}: {r.error}" for r in rounds if r.error],
        )
        s.rate_median, s.rate_min, s.rate_max = spread([r.readings_per_s for r in rounds])
        s.peer_cpu_s_per_m, s.peer_cpu_s_per_m_min, s.peer_cpu_s_per_m_max = spread(
            [r.peer_cpu_s_per_m for r in rounds]
        )
        s.influxd_cpu_s_per_m, s.influxd_cpu_s_per_m_min, s.influxd_cpu_s_per_m_max = spread(
            [r.influxd_cpu_s_per_m for r in rounds]
        )
        rss = [r.peak_rss_mb for r in rounds if r.peak_rss_mb is not None]
        s.peak_rss_mb = max(rss) if rss else None
        s.cpu_spans = sorted({r.cpu_span for r in rounds if r.peer_cpu_s or r.influxd_cpu_s})
        owed = [r for r in rounds if r.aggregates_expected is not None]
        if owed:
            s.aggregates_expected = sum(r.aggregates_expected or 0 for r in owed)
            s.aggregates_written = sum(r.aggregates_written or 0 for r in owed)
        shares = [r.extras.get("mqtt_client_cpu_share") for r in rounds]
        s.mqtt_client_cpu_share = spread(shares)[0]
        summaries[peer] = s
    top = summaries.get(ceiling)
    ref = summaries.get(reference)
    for s in summaries.values():
        if s.rate_median is None:
            continue
        if top is not None and top.rate_median:
            s.fraction_of_ceiling = s.rate_median / top.rate_median
        if ref is not None and ref.rate_median:
            s.ratio_to_nodered = s.rate_median / ref.rate_median
    for s in summaries.values():
        if ref is not None and ref.influxd_cpu_s_per_m and s.influxd_cpu_s_per_m is not None:
            s.influxd_cpu_to_nodered = s.influxd_cpu_s_per_m / ref.influxd_cpu_s_per_m
    return list(summaries.values())


@dataclass
class BenchReport:
    """The whole run: what ran, where, and what it measured."""

    started_at: str
    command: str
    scenario: str
    workload: dict[str, Any]
    rounds: int
    peers: list[str]
    machine: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    results: list[RoundResult] = field(default_factory=list)
    summaries: list[PeerSummary] = field(default_factory=list)
    idle_gateway: dict[str, Any] | None = None
    """The idle gateway's CPU share of one core (its own small figure)."""
    finished_at: str | None = None
    wall_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the report, JSON-ready."""
        out = asdict(self)
        out["results"] = [r.as_dict() for r in self.results]
        out["summaries"] = [
            {**asdict(s), "lost": s.lost, "aggregates_missing": s.aggregates_missing}
            for s in self.summaries
        ]
        return out
