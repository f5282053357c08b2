"""Inject one scheduled fault: kill or stop a process, wait its down time, start it again."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.bench.peers import start_gateway
from gateway.chaos.roles import Roles, sigkill, start_edge
from gateway.chaos.schedule import Action, ChaosEvent
from gateway.chaos.watch import Samples
from gateway.localstack.services import start_influxd, start_mosquitto
from gateway.settings import GatewaySettings

__all__ = ["inject"]


def inject(
    event: ChaosEvent,
    roles: Roles,
    settings: GatewaySettings,
    workdir: Path,
    report: dict[str, Any],
    samples: Samples,
    t0: float,
    progress: Callable[[str], None],
) -> None:
    """Run ``event`` to its end; mark it on the samples and add it to ``report['faults']``."""
    start = time.monotonic() - t0
    label = event.action.value
    progress(f"FAULT {label}" + (f" for {event.down_s:.0f} s" if event.down_s else ""))
    roles.faulting = True
    try:
        _undo_after(event, roles, settings, workdir, report)
    finally:
        roles.faulting = False
    end = time.monotonic() - t0
    samples.marks.append((start, end, label))
    report["faults"].append({"action": label, "from_s": round(start, 1), "to_s": round(end, 1)})
    progress(f"FAULT {label} undone after {end - start:.0f} s")


def _undo_after(
    event: ChaosEvent,
    roles: Roles,
    settings: GatewaySettings,
    workdir: Path,
    report: dict[str, Any],
) -> None:
    if event.action is Action.KILL_GATEWAY:
        assert roles.gateway is not None
        sigkill(roles.gateway.proc)
        time.sleep(event.down_s)
        roles.gateway = start_gateway("gateway", settings, workdir)
        report["gateway_restarts"] += 1
    elif event.action is Action.STOP_INFLUXD:
        assert roles.influxd is not None
        port = int(settings.influx.url.rsplit(":", 1)[1])
        roles.influxd.stop()
        time.sleep(event.down_s)
        roles.influxd, _ = start_influxd(workdir, port=port)
    elif event.action is Action.STOP_BROKER:
        assert roles.mosquitto is not None
        roles.mosquitto.stop()
        time.sleep(event.down_s)
        roles.mosquitto, _ = start_mosquitto(workdir, port=settings.mqtt.port)
    elif event.action is Action.KILL_EDGE:
        assert roles.edge is not None
        sigkill(roles.edge)
        time.sleep(event.down_s)
        roles.edge = start_edge(workdir / "edge-0.toml", workdir)
        report["edge_restarts"] += 1
