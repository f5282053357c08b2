"""The bench's backlog phase: an outage stored by the agent's own code, then the drain."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.bench.agentproc import agent_config, agent_process, wait_for
from edge.bench.probes import Broker, StatusWatch

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["backlog", "prefill"]


def prefill(config: dict[str, Any], minutes: float) -> tuple[int, int]:
    """Store ``minutes`` of the config's sampling with the link down; return (events, readings).

    This is the agent's own code path (sampler, batcher, outbox) driven by a fake clock,
    so 10 minutes take seconds.
    """
    from edge.agent import Agent
    from edge.clock import FakeClock
    from edge.config import load_config
    from edge.transport import FakeTransport

    cfg = load_config(None, overrides=config)
    clock = FakeClock(start=_utc_now())
    agent = Agent(cfg, clock=clock, transport=FakeTransport(is_connected=False))
    agent.start()
    end = clock.monotonic() + minutes * 60
    while clock.monotonic() < end:
        wait = agent.step()
        clock.advance(min(max(wait, 1e-6), end - clock.monotonic()))
    agent.shutdown(drain_s=0)  # stores the open batch, closes the outbox
    return agent.status.events_stored, agent.status.readings_stored


def _utc_now() -> datetime:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _depth(path: Path) -> int | None:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return None


def _witness(broker: Broker, device: str) -> StatusWatch:
    """Return a persistent subscriber that counts the device's telemetry messages."""
    witness = StatusWatch(
        broker.host,
        broker.port,
        f"sgbench/v1/bench/{device}/telemetry",
        count_only=True,
        client_id=f"witness-{device}",  # a persistent session: it survives the restart
    )
    wait_for(witness.subscribed.is_set, 10, "the witness subscriber")
    return witness


def _drain(
    broker: Broker, path: Path, proc: subprocess.Popen[bytes], *, events: int, rate: float
) -> tuple[float, float | None, float]:
    """Start the broker; watch the outbox drain to its steady depth.

    Returns when the broker came up, when the first event left the outbox (None if none
    was seen to leave) and when the drain was done, on the monotonic clock.
    """
    broker.start()
    t_up = time.monotonic()
    steady = max(2, int(rate / 50) + 1)  # what sampling adds between two sends
    peak = events
    t_first = None
    while True:
        depth = _depth(path)
        if depth is not None:
            peak = max(peak, depth)
            if t_first is None and depth < peak:
                t_first = time.monotonic()
            if depth <= steady:
                return t_up, t_first, time.monotonic()
        if proc.poll() is not None:
            raise RuntimeError(f"the agent exited ({proc.returncode}) during the drain")
        if time.monotonic() - t_up > 600:
            raise RuntimeError("the backlog did not drain in 10 minutes")
        time.sleep(0.005)


def backlog(
    broker: Broker, work: Path, *, minutes: float, rate: float, max_rate: float
) -> dict[str, Any]:
    """Drain a pre-filled outbox of ``minutes`` x ``rate`` readings/s after an outage."""
    tag = "paced" if max_rate else "unlimited"
    device = f"bench-backlog-{tag}"
    path = work / f"backlog-{tag}.db"
    config = agent_config(
        device,
        broker.port,
        path,
        host=broker.host,
        sensors=10,
        interval_s=10 / rate,  # 10 sensors: `rate` readings/s in all
        outbox_extra={"max_rate": max_rate},
    )
    t0 = time.perf_counter()
    events, readings = prefill(config, minutes)
    prefill_s = time.perf_counter() - t0
    witness = _witness(broker, device)
    broker.stop()
    with agent_process(config, work) as proc:
        # the agent is up and storing new events with the broker still down
        wait_for(lambda: (_depth(path) or 0) > events, 30, "the agent to store a new event", proc)
        t_up, t_first, t_done = _drain(broker, path, proc, events=events, rate=rate)
    try:
        wait_for(lambda: witness.snapshot()[0] >= events, 30, "the backlog at the witness")
    except RuntimeError:
        pass  # reported below
    finally:
        witness.close()
    drain_s = t_done - t_up
    per_event = readings / max(1, events)
    since_first = t_done - (t_first or t_up)
    return {
        "outage_minutes_simulated": minutes,
        "readings_per_s_during_outage": rate,
        "max_rate_events_per_s": max_rate or "unlimited",
        "backlog_events": events,
        "backlog_readings": readings,
        "readings_per_event": round(per_event, 1),
        "prefill_s": round(prefill_s, 1),
        "broker_restarted": broker.own,
        "reconnect_s": round((t_first or t_up) - t_up, 2),
        "drain_s": round(drain_s, 2),
        "drain_events_per_s": round(events / drain_s, 1),
        "drain_readings_per_s": round(readings / drain_s),
        # from the first delete on (too coarse to say when the whole drain is that short)
        "drain_readings_per_s_after_reconnect": (
            round(readings / since_first) if since_first >= 0.1 else None
        ),
        "witness_messages": witness.snapshot()[0],
        "all_arrived_at_witness": witness.snapshot()[0] >= events,
    }
