"""The gateway's own view of storing readings: its counters, its latency histograms.

For the ``sensorgate`` peers the benchmark reads the gateway's Prometheus endpoint:

- ``sensorgate_points_written_total{measurement="readings"}``: the readings it says it
  stored, sampled during the burst; the rate over the span in which it rose is the
  *sustained* rate (start-up and the tail excluded), beside the end-to-end rate measured
  at influxd;
- ``sensorgate_arrival_to_stored_seconds`` and ``sensorgate_end_to_end_lag_seconds``
  (histograms): p50/p99 from a message's arrival (and from the reading's event time) to
  its readings being stored, measured in a paced phase at half the burst's rate with the
  load generator (``sensorgate loadgen``), after the burst. By default it publishes as
  the burst's own devices, going on from their last sequence (:func:`paced_fleet`);
- ``sensorgate_mqtt_client_cpu_seconds_total``: the CPU of the MQTT client's network
  thread, reported as a share of the gateway's (skipped where a gateway lacks it);
- ``sensorgate_points_written_total{measurement="aggregates"}``: the aggregates it stored
  (:mod:`gateway.bench.aggregates` waits for them);
- ``sensorgate_redelivered_messages_total`` and ``sensorgate_duplicate_readings_total``
  (``sensorgate bench-stop``, :mod:`gateway.bench.stop`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from contract.errors import SensorGateError, ServiceError
from gateway.bench.measure import Snapshot
from gateway.bench.workload import DEVICE_PREFIX, SITE, Workload

__all__ = [
    "DEADLETTERS_METRIC",
    "DUPLICATES_METRIC",
    "MQTT_CPU_METRIC",
    "REDELIVERED_METRIC",
    "latency_phase",
    "loadgen_argv",
    "paced_devices",
    "paced_fleet",
    "quantile",
    "scrape",
    "sustained_rate",
]

MQTT_CPU_METRIC = "sensorgate_mqtt_client_cpu_seconds_total"
"""CPU of the gateway's MQTT network threads (its share of the gateway's CPU)."""
REDELIVERED_METRIC = "sensorgate_redelivered_messages_total"
"""Messages the broker sent the gateway again (MQTT dup flag)."""
DUPLICATES_METRIC = "sensorgate_duplicate_readings_total"
"""Readings the gateway's dedupe dropped."""
DEADLETTERS_METRIC = "sensorgate_deadletters_total"
"""Messages the gateway rejected (all reasons; ``sensorgate bench-adapters``)."""
_COUNTERS = frozenset(
    (
        "sensorgate_readings_in_total",
        "sensorgate_messages_in_total",
        "sensorgate_late_readings_total",
        MQTT_CPU_METRIC,
        REDELIVERED_METRIC,
        DUPLICATES_METRIC,
        DEADLETTERS_METRIC,
        "sensorgate_mqtt_received_messages_total",
    )
)
_ARRIVAL = "sensorgate_arrival_to_stored_seconds_bucket"
_LAG = "sensorgate_end_to_end_lag_seconds_bucket"


def scrape(port: int) -> dict[str, Any]:
    """Return the gateway's counters and histogram buckets from ``/metrics``.

    Keys: ``written:<measurement>``, histogram bucket names (lists of ``(le, count)``),
    and the counters ``sensorgate_readings_in_total``, ``sensorgate_messages_in_total``,
    ``sensorgate_late_readings_total``, :data:`MQTT_CPU_METRIC`,
    :data:`REDELIVERED_METRIC`, :data:`DUPLICATES_METRIC` and :data:`DEADLETTERS_METRIC`
    (those the gateway exposes; labelled counters are summed).
    """
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError as exc:
        raise ServiceError(f"the gateway did not answer {url}: {exc}") from exc
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sensorgate_points_written_total":
                out[f"written:{sample.labels['measurement']}"] = sample.value
            elif sample.name in (_ARRIVAL, _LAG):
                out.setdefault(sample.name, []).append((float(sample.labels["le"]), sample.value))
            elif sample.name in _COUNTERS:
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def quantile(
    before: Sequence[tuple[float, float]], after: Sequence[tuple[float, float]], q: float
) -> float | None:
    """Estimate a quantile from the change of a cumulative histogram (linear in a bucket)."""
    prev = dict(before)
    buckets = sorted((le, count - prev.get(le, 0.0)) for le, count in after)
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower_le, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower_le
            span = count - lower_count
            frac = (rank - lower_count) / span if span else 1.0
            return lower_le + (le - lower_le) * frac
        lower_le, lower_count = le, count
    return None


def sustained_rate(samples: Sequence[Snapshot]) -> float | None:
    """Readings/s by the gateway's own counter, over the span in which it was rising."""
    points = [(s.t, s.claimed) for s in samples if s.claimed is not None]
    rising = [p for i, p in enumerate(points) if i and p[1] > points[i - 1][1]]
    if len(rising) < 2:
        return None
    # The first rising sample includes the start-up: measure from there on.
    (t0, c0), (t1, c1) = rising[0], rising[-1]
    return (c1 - c0) / (t1 - t0) if t1 > t0 else None


def mqtt_cpu_share(before: dict[str, Any], after: dict[str, Any], cpu_s: float) -> float | None:
    """Return the MQTT client's share of the gateway's CPU, if the gateway exposes it."""
    if MQTT_CPU_METRIC not in after or cpu_s <= 0:
        return None
    return float(after[MQTT_CPU_METRIC] - before.get(MQTT_CPU_METRIC, 0.0)) / cpu_s


def loadgen_argv(
    *,
    host: str,
    port: int,
    prefix: str,
    devices: int,
    readings_per_message: int,
    metrics: int,
    rate: float,
    duration_s: float,
    fleet: Sequence[str] = (),
) -> list[str]:
    """Return the command of ``sensorgate loadgen`` at QoS 1, with no progress lines.

    ``fleet``: more options saying whose devices publish (:func:`paced_fleet`).
    """
    return [
        sys.executable, "-m", "gateway.cli", "loadgen",
        "--host", host, "--port", str(port), "--prefix", prefix,
        "--readings-per-message", str(readings_per_message),
        "--devices", str(devices), "--metrics", str(metrics),
        "--duration", str(duration_s), "--qos", "1",
        "--rate", str(max(1, int(rate))), "--progress-every", "0", *fleet,
    ]  # fmt: skip


def paced_devices(workload: Workload, fleet: str) -> int:
    """Return how many devices publish in the paced phase's ``fleet`` (see :func:`paced_fleet`).

    ``burst``: the devices that published in the burst; ``new``: as many as the workload has.
    """
    paced_fleet(workload, fleet)  # refuses an unknown fleet
    return workload.publishing_devices if fleet == "burst" else workload.devices


def paced_fleet(workload: Workload, fleet: str) -> list[str]:
    """Return the load generator's options for the paced phase's ``fleet``.

    ``burst``: the burst's own devices, sensors and metrics, with each device's sequence
    going on from its last one in the burst. The gateway sees the fleet it has just
    stored, in steady state. ``new``: a fleet of as many devices, 10 series each, none of
    which the gateway knows: what it costs to onboard them is in the figures.
    """
    if fleet == "new":
        return []
    if fleet != "burst":
        raise ValueError(f"unknown paced fleet {fleet!r} (burst or new)")
    return [
        "--site", SITE, "--device-prefix", DEVICE_PREFIX,
        "--sensors", str(workload.sensors_per_device),
        "--first-sequence", str(workload.messages_per_device),
    ]  # fmt: skip


def _loadgen(
    *,
    host: str,
    port: int,
    prefix: str,
    devices: int,
    readings_per_message: int,
    rate: float,
    duration_s: float,
    fleet: Sequence[str],
    env: dict[str, str],
) -> dict[str, Any]:
    argv = loadgen_argv(
        host=host,
        port=port,
        prefix=prefix,
        devices=devices,
        readings_per_message=readings_per_message,
        metrics=10,
        rate=rate,
        duration_s=duration_s,
        fleet=fleet,
    )
    argv.append("--json")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 120, env=env)
    if not done.stdout.strip():
        raise SensorGateError(f"the load generator failed ({done.returncode}):\n{done.stderr}")
    return dict(json.loads(done.stdout))


def latency_phase(
    *,
    metrics_port: int,
    host: str,
    port: int,
    prefix: str,
    devices: int,
    readings_per_message: int,
    rate: float,
    duration_s: float,
    env: dict[str, str],
    fleet: Sequence[str] = (),
    drain_timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Publish at ``rate`` readings/s for ``duration_s``; return p50/p99 from the histograms.

    Waits until the gateway has stored what was published (or its counter stopped for
    ``drain_timeout_s``) before reading the histograms again.
    """
    before = scrape(metrics_port)
    load = _loadgen(
        host=host,
        port=port,
        prefix=prefix,
        devices=devices,
        readings_per_message=readings_per_message,
        rate=rate,
        duration_s=duration_s,
        fleet=fleet,
        env=env,
    )
    target = before.get("written:readings", 0.0) + float(load.get("readings", 0))
    last, last_change = -1.0, time.monotonic()
    while True:
        written = scrape(metrics_port).get("written:readings", 0.0)
        if written >= target:
            break
        if written != last:
            last, last_change = written, time.monotonic()
        elif time.monotonic() - last_change > drain_timeout_s:
            break
        time.sleep(0.25)
    after = scrape(metrics_port)
    result: dict[str, Any] = {
        "rate_readings_per_s": round(rate, 1),
        "published_readings_per_s": load.get("readings_per_s"),
        "duration_s": duration_s,
        "readings": load.get("readings"),
        "stored": after.get("written:readings", 0.0) - before.get("written:readings", 0.0),
    }
    for name, key in (("arrival_to_stored", _ARRIVAL), ("event_to_stored", _LAG)):
        if key in after:
            for q in (0.5, 0.99):
                value = quantile(before.get(key, []), after[key], q)
                result[f"{name}_p{int(q * 100)}_s"] = None if value is None else round(value, 4)
    return result
