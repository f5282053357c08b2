"""The bench's first phases: the outbox alone, the footprint, the unconstrained rate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from edge.bench.agentproc import agent_config, agent_process, status_topic, wait_for
from edge.bench.probes import Broker, ProcessMeter, StatusWatch
from edge.config import MIN_INTERVAL_S

__all__ = ["OFFERED", "footprint", "outbox_inserts", "unconstrained", "unconstrained_config"]

OFFERED = 100_000  # readings/s offered in the unconstrained phase


def outbox_inserts(work: Path) -> dict[str, Any]:
    """Numbered inserts per second (``Outbox.append``: counter + event, one transaction)."""
    from datetime import UTC, datetime

    from contract.codec import encode
    from contract.events import Reading, TelemetryEvent
    from edge.outbox import Outbox

    now = datetime.now(UTC)
    out: dict[str, Any] = {}
    for readings in (10, 50):
        batch = [
            Reading(sensor="s", metric=f"m{i}", value=20.0 + i, unit="degC", time=now)
            for i in range(readings)
        ]

        def payload(seq: int, batch: list[Reading] = batch) -> bytes:
            event = TelemetryEvent.create(site="bench", device="d", sequence=seq, readings=batch)
            return encode(event)

        out[f"payload_bytes_{readings}_readings"] = len(payload(0))
        runs: tuple[tuple[Literal["full", "normal"], int], ...] = (("full", 300), ("normal", 1500))
        for durability, n in runs:
            blob = payload(0)
            path = work / f"inserts-{durability}-{readings}.db"

            def same_blob(_seq: int, blob: bytes = blob) -> bytes:
                return blob

            with Outbox(path, durability=durability) as box:
                t0 = time.perf_counter()
                for _ in range(n):
                    box.append("t", "d", same_blob)
                rate = n / (time.perf_counter() - t0)
            out[f"inserts_per_s_{durability}_{readings}_readings"] = round(rate)
    return out


def footprint(broker: Broker, work: Path, *, seconds: float, warmup_s: float) -> dict[str, Any]:
    """RSS and CPU of the agent process at 10 sensors x 1 Hz."""
    device = "bench-footprint"
    config = agent_config(device, broker.port, work / "footprint.db", host=broker.host)
    watch = StatusWatch(broker.host, broker.port, status_topic(device))
    try:
        with agent_process(config, work) as proc:
            wait_for(lambda: watch.snapshot()[0] >= 1, 30, "the agent's birth message", proc)
            meter = ProcessMeter(proc.pid)
            time.sleep(warmup_s)  # let imports, first batches and the WAL settle
            rss: list[int] = []
            cpu0, t0 = meter.cpu_seconds(), time.monotonic()
            end = t0 + seconds
            while time.monotonic() < end:
                rss.append(meter.rss_bytes())
                time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            cpu1, t1 = meter.cpu_seconds(), time.monotonic()
            rss.append(meter.rss_bytes())
            # a heartbeat on demand is not available: read the stored counters at the end
        cpu_percent = 100.0 * (cpu1 - cpu0) / (t1 - t0)
        return {
            "sensors": 10,
            "interval_s": 1.0,
            "readings_per_s_offered": 10.0,
            "measured_s": round(t1 - t0, 1),
            "warmup_s": warmup_s,
            "rss_mb_max": round(max(rss) / 2**20, 1),
            "rss_mb_mean": round(sum(rss) / len(rss) / 2**20, 1),
            "cpu_percent_of_one_core": round(cpu_percent, 2),
            "meter": meter.source,
        }
    finally:
        watch.close()


def unconstrained_config(broker: Broker, work: Path, *, sensors: int) -> dict[str, Any]:
    """Return the unconstrained phase's agent config: more readings offered than one takes.

    The config refuses intervals under ``MIN_INTERVAL_S`` and heartbeats under 1 s, so the
    offer comes from the sensor count (1,000 sensors every 10 ms offer 100,000 readings/s).
    """
    return agent_config(
        "bench-max",
        broker.port,
        work / "max.db",
        host=broker.host,
        sensors=sensors,
        interval_s=max(MIN_INTERVAL_S, sensors / OFFERED),
        batch={"max_readings": 50, "max_age_s": 1.0},
        outbox_extra={"max_rate": 0, "max_inflight": 200},
        heartbeat_s=1.0,
    )


def unconstrained(
    broker: Broker, work: Path, *, seconds: float, warmup_s: float, sensors: int = 1000
) -> dict[str, Any]:
    """Measure the readings/s the broker PUBACKed with the offered load above capacity."""
    device = "bench-max"
    interval_s = max(MIN_INTERVAL_S, sensors / OFFERED)
    config = unconstrained_config(broker, work, sensors=sensors)
    watch = StatusWatch(broker.host, broker.port, status_topic(device))
    try:
        with agent_process(config, work) as proc:
            meter = ProcessMeter(proc.pid)
            wait_for(lambda: watch.snapshot()[0] >= 2, 30, "the agent's status", proc)
            time.sleep(warmup_s)
            seen = watch.snapshot()[0]
            n0, first = wait_for(lambda: _fresh(watch, seen), 5, "a heartbeat", proc)
            cpu0 = meter.cpu_seconds()
            time.sleep(seconds)
            _n1, last = wait_for(lambda: _fresh(watch, n0), 5, "a heartbeat", proc)
            cpu1 = meter.cpu_seconds()
            rss = meter.rss_bytes()
        dt = last["uptime_s"] - first["uptime_s"]
        per_event = last["readings_stored"] / max(1, last["events_stored"])
        acked = (last["acked_total"] - first["acked_total"]) * per_event
        sampled = last["readings_stored"] - first["readings_stored"]
        depth_growth = last["outbox_depth"] - first["outbox_depth"]
        return {
            "sensors": sensors,
            "readings_per_s_offered": round(sensors / interval_s),
            "measured_s": round(dt, 2),
            "readings_per_event": round(per_event, 2),
            "readings_per_s_acked": round(acked / dt),
            "events_per_s_acked": round((last["acked_total"] - first["acked_total"]) / dt),
            "readings_per_s_sampled": round(sampled / dt),
            "outbox_depth_growth_events": depth_growth,
            "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / dt, 1),
            "rss_mb": round(rss / 2**20, 1),
            "durability": "full",
            "max_inflight": 200,
        }
    finally:
        watch.close()


def _fresh(watch: StatusWatch, after: int) -> tuple[int, dict[str, Any]] | None:
    """Return the next status after message number ``after`` (None until it arrives)."""
    count, latest = watch.snapshot()
    if count > after and latest is not None and "acked_total" in latest:
        return count, latest
    return None
