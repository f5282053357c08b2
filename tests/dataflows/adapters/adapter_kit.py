"""Helpers for the adapter tests: build one adapter from a few options, run messages."""

from __future__ import annotations

from typing import Any

from dataflows.adapters import AdapterResult, AdapterSet, parse_adapters

NOW = 1_760_000_000_000_000  # 2025-10-09T08:53:20Z, the arrival time of every message
"""µs since the epoch."""


def adapters(*tables: dict[str, Any]) -> AdapterSet:
    """An AdapterSet from ``[[adapter]]`` tables given as dicts."""
    return AdapterSet(parse_adapters({"adapter": list(tables)}))


def one(kind: str, **options: Any) -> AdapterSet:
    """An AdapterSet of one adapter named after its kind."""
    return adapters({"name": kind, "kind": kind, **options})


def run(aset: AdapterSet, topic: str, payload: bytes | str, at: int = NOW) -> AdapterResult:
    """Adapt one message; it must be claimed by an adapter."""
    if isinstance(payload, str):
        payload = payload.encode()
    result = aset.adapt(topic, payload, at)
    assert result is not None, f"no adapter took {topic!r}"
    return result


def rows(result: AdapterResult) -> dict[tuple[str, str], float]:
    """{(sensor, metric): value} over every device of a result."""
    return {(s, m): v for t in result.telemetry for s, m, v, _u, _t in t.rows()}


def units(result: AdapterResult) -> dict[tuple[str, str], str]:
    """{(sensor, metric): unit}."""
    return {(s, m): u for t in result.telemetry for s, m, _v, u, _t in t.rows()}
