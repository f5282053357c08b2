"""Run ``sensorgate chaos``: steady load through edge agents while things break.

1. mosquitto (persistence on) and influxd on fixed loopback ports in one folder, so
   either can be stopped and started again on the same port with the same data.
2. The gateway as its own process (recovery on, ``seq`` stored with each reading, 10 s
   windows); one real edge agent process (``sensorgate edge run``) and a simulated
   fleet (:mod:`gateway.chaos.fleet`: real agents, one process), each device sampling
   ``readings_per_event`` simulated sensors into its durable outbox.
3. The faults of :func:`~gateway.chaos.schedule.build_schedule`, on time. RSS of every
   process is sampled every two seconds.
4. At the end the agents stop (partial batches are stored), what is left in their
   outboxes is sent, and the run waits until InfluxDB holds every published reading (or
   stops growing) and the windows have closed. Then per device: published (from the
   outbox), stored, lost, duplicates (windows' counts beyond the distinct readings),
   late; dead letters by reason from InfluxDB; gateway restarts; an RSS plot.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contract.errors import SensorGateError
from gateway.bench.influxd import Influxd
from gateway.bench.peers import start_gateway
from gateway.chaos.accounting import totals
from gateway.chaos.counting import await_and_count, deadletters, drain_outbox
from gateway.chaos.faults import inject
from gateway.chaos.roles import (
    DATABASE,
    PER_EVENT,
    Roles,
    edge_config,
    gateway_settings,
    start_edge,
    start_fleet,
)
from gateway.chaos.schedule import ChaosEvent, build_schedule
from gateway.chaos.watch import (
    EVERY_S,
    Samples,
    dead_spans,
    log_errors,
    peaks,
    plot,
    sample,
    spill_drains,
    wait_until_s,
)
from gateway.influx.layout import StorageLayout
from gateway.localstack.services import free_port, start_influxd, start_mosquitto
from gateway.settings import GatewaySettings

__all__ = ["ChaosOptions", "dumps", "load_figures", "run_chaos", "schedule_for"]

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    """What to run."""

    minutes: float = 10.0
    rate: float = 5_000.0
    """Readings per second offered by all devices together."""
    devices: int = 5
    """Devices: one in the edge agent process, the rest in the simulated fleet."""
    influx_down_s: float = 60.0
    broker_down_s: float = 20.0
    drain_timeout_s: float = 600.0
    share_group: str = ""
    """The gateway's share group; empty: plain subscriptions (mosquitto 2.0 drops what
    arrives for a shared one after its own restart, until the gateway subscribes again)."""
    workdir: Path | None = None
    plot: Path | None = None
    faults: bool = True
    """False: the same load and accounting with no fault at all (to find the sustained rate)."""


def schedule_for(options: ChaosOptions) -> list[ChaosEvent]:
    """Return the faults of a run: the fixed schedule, or none with ``faults=False``."""
    if not options.faults:
        return []
    return build_schedule(
        options.minutes * 60,
        influx_down_s=options.influx_down_s,
        broker_down_s=options.broker_down_s,
    )


def load_figures(
    published: int, load_s: float, backlog_events: int, drain_s: float | None
) -> dict[str, Any]:
    """Return what the load achieved.

    That is the readings/s made durable at the edge over the load phase, the events still
    in the outboxes when it ended, and how long after it everything was stored.
    """
    return {
        "load_s": round(load_s, 1),
        "achieved_rate": round(published / load_s, 1) if load_s > 0 else 0.0,
        "backlog_events_at_end": backlog_events,
        "backlog_readings_at_end": backlog_events * PER_EVENT,
        "drain_s": None if drain_s is None else round(drain_s, 1),
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class _Run:
    """One run in progress: its folder, processes, samples and report."""

    options: ChaosOptions
    workdir: Path
    report: dict[str, Any]
    progress: Progress
    roles: Roles
    samples: Samples
    t0: float
    influx: Influxd | None = None
    settings: GatewaySettings | None = None
    mqtt_port: int = 0


def run_chaos(options: ChaosOptions, *, command: str, progress: Progress) -> dict[str, Any]:
    """Run the whole chaos round; return the report (failures are in it)."""
    schedule = schedule_for(options)
    own = options.workdir is None
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="sensorgate-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    run = _Run(
        options,
        workdir,
        _report_head(options, command, schedule),
        progress,
        Roles(),
        Samples(),
        time.monotonic(),
    )
    stop_sampling = threading.Event()
    try:
        _start(run)
        threading.Thread(
            target=sample, args=(run.roles, run.samples, run.t0, stop_sampling), daemon=True
        ).start()
        t_load = time.monotonic()
        load_s, drained = _load(run, schedule, t_load)
        _count(run, t_load, load_s, drained)
    except (SensorGateError, OSError, ValueError) as exc:
        run.report["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        stop_sampling.set()
        _stop_all(run)
        _finish(run, own)
    totals_ = run.report.get("totals") or {}
    run.report["ok"] = (
        run.report["error"] is None
        and totals_.get("lost", 1) == 0
        and not run.report["gateway_crashes"]
    )
    return run.report


def _report_head(options: ChaosOptions, command: str, schedule: list[ChaosEvent]) -> dict[str, Any]:
    return {
        "command": command,
        "started_at": _now(),
        "minutes": options.minutes,
        "rate": options.rate,
        "devices": options.devices,
        "share_group": options.share_group or None,
        "schedule": [
            {"at_s": e.at_s, "action": e.action.value, "down_s": e.down_s} for e in schedule
        ],
        "faults": [],
        "gateway_restarts": 0,
        "edge_restarts": 0,
        "error": None,
    }


def _start(run: _Run) -> None:
    """Start mosquitto, influxd, the gateway, the edge agent and the fleet."""
    options, workdir, roles = run.options, run.workdir, run.roles
    run.mqtt_port, influx_port = free_port(), free_port()
    run.progress(f"starting mosquitto :{run.mqtt_port} and influxd :{influx_port} in {workdir}")
    roles.mosquitto, _ = start_mosquitto(workdir, port=run.mqtt_port)
    roles.influxd, _ = start_influxd(workdir, port=influx_port)
    run.influx = Influxd(f"http://127.0.0.1:{influx_port}", DATABASE)
    run.influx.create_database()
    run.settings = gateway_settings(workdir, run.mqtt_port, influx_port, options.share_group)
    roles.gateway = start_gateway("gateway", run.settings, workdir)
    interval = round(PER_EVENT * options.devices / options.rate, 4)
    configs = [
        edge_config(
            workdir / f"edge-{i}.toml",
            device=f"dev-{i}",
            port=run.mqtt_port,
            outbox=workdir / f"outbox-{i}.db",
            interval_s=interval,
            seed=i,
        )
        for i in range(options.devices)
    ]
    run.progress(
        f"load: {options.devices} devices x {PER_EVENT} sensors every {interval} s"
        f" = {options.rate:,.0f} readings/s ({options.devices - 1} in the fleet process)"
    )
    roles.edge = start_edge(configs[0], workdir)
    roles.fleet = start_fleet(configs[1:], workdir)


def _load(run: _Run, schedule: list[ChaosEvent], t_load: float) -> tuple[float, int]:
    """Run the load and the faults on time; stop the agents; send what their outboxes kept.

    Return the load's length (to the agents' stop) and the events sent from the outboxes.
    """
    assert run.settings is not None
    roles = run.roles
    for event in schedule:
        wait_until_s(t_load, event.at_s, roles, run.progress)
        inject(
            event, roles, run.settings, run.workdir, run.report, run.samples, run.t0, run.progress
        )
    wait_until_s(t_load, run.options.minutes * 60, roles, run.progress)
    run.progress("load ends: stopping the agents (partial batches are stored)")
    for proc in (roles.edge, roles.fleet):
        if proc is not None:
            proc.stop(timeout=60)
    roles.edge = roles.fleet = None
    load_s = time.monotonic() - t_load
    run.report["load_ended_s"] = round(time.monotonic() - run.t0, 1)
    drained = sum(
        drain_outbox(run.workdir / f"outbox-{i}.db", run.mqtt_port)
        for i in range(run.options.devices)
    )
    run.progress(f"sent {drained} event(s) left in the outboxes")
    return load_s, drained


def _count(run: _Run, t_load: float, load_s: float, drained: int) -> None:
    """Wait until everything is stored and count it into the report."""
    assert run.influx is not None
    assert run.settings is not None
    report, layout = run.report, StorageLayout.of(run.settings.influx)
    tallies, stored_at = await_and_count(
        run.influx,
        layout,
        run.workdir,
        run.options.devices,
        run.options.drain_timeout_s,
        run.progress,
    )
    drain_s = None if stored_at is None else stored_at - t_load - load_s
    report["devices_detail"] = [t.as_dict() for t in tallies]
    report["totals"] = totals(tallies)
    report["load"] = load_figures(report["totals"]["published"], load_s, drained, drain_s)
    run.progress(
        f"achieved {report['load']['achieved_rate']:,.0f} readings/s of {run.options.rate:,.0f}"
        f" offered; {drained} event(s) in the outboxes at the end; all stored"
        f" {report['load']['drain_s']} s after the load ended"
    )
    report["deadletters"] = deadletters(run.influx, layout)
    gateway = run.roles.gateway
    report["gateway_alive"] = gateway is not None and gateway.proc.alive()


def _stop_all(run: _Run) -> None:
    roles = run.roles
    if run.influx is not None:
        run.influx.close()
    for proc in (roles.edge, roles.fleet):
        if proc is not None:
            proc.stop()
    if roles.gateway is not None:
        roles.gateway.stop()
    for svc in (roles.influxd, roles.mosquitto):
        if svc is not None:
            svc.stop()


def _finish(run: _Run, own: bool) -> None:
    """Add what the samples and logs say to the report; remove an own, clean folder."""
    report, samples = run.report, run.samples
    report["wall_s"] = round(time.monotonic() - run.t0, 1)
    report["rss_mb_peak"] = peaks(samples)
    report["rss_samples"] = len(samples.rss)
    report["spill_drain"] = spill_drains(samples.spill, report["faults"])
    report["gateway_crashes"] = [
        {"from_s": a, "to_s": b} for a, b in dead_spans(samples.gateway_dead, every_s=EVERY_S)
    ]
    report["gateway_errors"] = log_errors(run.workdir / "gateway.log")
    if run.options.plot is not None and samples.rss:
        report["plot"] = str(plot(samples, run.options.plot, report))
    if own and report["error"] is None:
        shutil.rmtree(run.workdir, ignore_errors=True)
    else:
        report["workdir"] = str(run.workdir)


def dumps(report: dict[str, Any]) -> str:
    """Return the report as JSON text."""
    return json.dumps(report, indent=2, default=str)
