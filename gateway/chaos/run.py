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

import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from contract.errors import SensorGateError
from gateway.bench.influxd import Influxd
from gateway.bench.peers import RunningPeer, child_env, start_gateway
from gateway.chaos.accounting import DeviceTally, totals
from gateway.chaos.schedule import Action, ChaosEvent, build_schedule
from gateway.influx.layout import StorageLayout
from gateway.localstack.services import ManagedProcess, free_port, start_influxd, start_mosquitto
from gateway.settings import GatewaySettings, load_settings

__all__ = ["ChaosOptions", "run_chaos"]

Progress = Callable[[str], None]
DATABASE = "chaos"
PER_EVENT = 50
WINDOW = "10s"


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


@dataclass
class _Roles:
    gateway: RunningPeer | None = None
    mosquitto: ManagedProcess | None = None
    influxd: ManagedProcess | None = None
    edge: ManagedProcess | None = None
    fleet: ManagedProcess | None = None
    faulting: bool = False
    """A fault is being injected (a dead gateway is then expected)."""


@dataclass
class _Rss:
    samples: list[tuple[float, str, float]] = field(default_factory=list)
    marks: list[tuple[float, float, str]] = field(default_factory=list)
    spill: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since start, points in the gateway's spill) every two seconds."""
    gateway_dead: list[float] = field(default_factory=list)
    """Samples (seconds since start) at which the gateway process had exited outside a fault."""


def _edge_config(
    path: Path, *, device: str, port: int, outbox: Path, interval_s: float, seed: int
) -> Path:
    sensors = "\n".join(
        f'[[sensors]]\nid = "s{i:02d}"\ndriver = "simulated"\ninterval_s = {interval_s}\n'
        f'options = {{ seed = {seed * 100 + i}, metric = "v", noise = 0.5 }}\n'
        for i in range(PER_EVENT)
    )
    path.write_text(
        f'site = "chaos"\ndevice = "{device}"\nlog_level = "WARNING"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nreconnect_min_s = 0.5\n'
        f"reconnect_max_s = 3.0\n"
        f"[batch]\nmax_readings = {PER_EVENT}\nmax_age_s = 600\n"
        f'[outbox]\npath = "{outbox}"\nmax_rate = 400\nmax_inflight = 200\n'
        f'durability = "normal"\n'
        f"[status]\nheartbeat_s = 30\n\n{sensors}"
    )
    return path


def _gateway_settings(
    workdir: Path, mqtt_port: int, influx_port: int, share_group: str
) -> GatewaySettings:
    return load_settings(
        mqtt={"host": "127.0.0.1", "port": mqtt_port, "share_group": share_group},
        influx={
            "url": f"http://127.0.0.1:{influx_port}",
            "database": DATABASE,
            "spill_dir": str(workdir / "spill"),
            "reading_seq": True,
        },
        stream={"windows": (WINDOW,)},
        metrics_port=free_port(),
        recovery_dir=workdir / "recovery",
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_chaos(options: ChaosOptions, *, command: str, progress: Progress) -> dict[str, Any]:
    """Run the whole chaos round; return the report (failures are in it)."""
    duration = options.minutes * 60
    schedule = schedule_for(options)
    own = options.workdir is None
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="sensorgate-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
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
    roles = _Roles()
    rss = _Rss()
    stop_sampling = threading.Event()
    t0 = time.monotonic()
    influx: Influxd | None = None
    try:
        mqtt_port, influx_port = free_port(), free_port()
        progress(f"starting mosquitto :{mqtt_port} and influxd :{influx_port} in {workdir}")
        roles.mosquitto, _ = start_mosquitto(workdir, port=mqtt_port)
        roles.influxd, _ = start_influxd(workdir, port=influx_port)
        influx = Influxd(f"http://127.0.0.1:{influx_port}", DATABASE)
        influx.create_database()
        settings = _gateway_settings(workdir, mqtt_port, influx_port, options.share_group)
        roles.gateway = start_gateway("gateway", settings, workdir)
        interval = round(PER_EVENT * options.devices / options.rate, 4)
        configs = [
            _edge_config(
                workdir / f"edge-{i}.toml",
                device=f"dev-{i}",
                port=mqtt_port,
                outbox=workdir / f"outbox-{i}.db",
                interval_s=interval,
                seed=i,
            )
            for i in range(options.devices)
        ]
        progress(
            f"load: {options.devices} devices x {PER_EVENT} sensors every {interval} s"
            f" = {options.rate:,.0f} readings/s ({options.devices - 1} in the fleet process)"
        )
        roles.edge = _start_edge(configs[0], workdir)
        roles.fleet = ManagedProcess(
            "fleet",
            [sys.executable, "-m", "gateway.chaos.fleet", *map(str, configs[1:])],
            workdir / "fleet.log",
            env=child_env(),
        )
        sampler = threading.Thread(
            target=_sample_rss, args=(roles, rss, t0, stop_sampling), daemon=True
        )
        sampler.start()
        t_load = time.monotonic()
        for event in schedule:
            _wait_until_s(t_load, event.at_s, roles, progress)
            _inject(event, roles, settings, workdir, report, rss, t0, progress)
        _wait_until_s(t_load, duration, roles, progress)
        progress("load ends: stopping the agents (partial batches are stored)")
        for proc in (roles.edge, roles.fleet):
            if proc is not None:
                proc.stop(timeout=60)
        roles.edge = roles.fleet = None
        load_s = time.monotonic() - t_load
        report["load_ended_s"] = round(time.monotonic() - t0, 1)
        drained = sum(
            _drain_outbox(workdir / f"outbox-{i}.db", mqtt_port) for i in range(options.devices)
        )
        progress(f"sent {drained} event(s) left in the outboxes")
        layout = StorageLayout.of(settings.influx)
        tallies, stored_at = _await_and_count(influx, layout, workdir, options, roles, progress)
        drain_s = None if stored_at is None else stored_at - t_load - load_s
        report["devices_detail"] = [t.as_dict() for t in tallies]
        report["totals"] = totals(tallies)
        report["load"] = load_figures(report["totals"]["published"], load_s, drained, drain_s)
        progress(
            f"achieved {report['load']['achieved_rate']:,.0f} readings/s of {options.rate:,.0f}"
            f" offered; {drained} event(s) in the outboxes at the end; all stored"
            f" {report['load']['drain_s']} s after the load ended"
        )
        report["deadletters"] = _deadletters(influx, layout)
        report["gateway_alive"] = roles.gateway is not None and roles.gateway.proc.alive()
    except (SensorGateError, OSError, ValueError) as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        stop_sampling.set()
        if influx is not None:
            influx.close()
        for proc in (roles.edge, roles.fleet):
            if proc is not None:
                proc.stop()
        if roles.gateway is not None:
            roles.gateway.stop()
        for svc in (roles.influxd, roles.mosquitto):
            if svc is not None:
                svc.stop()
        report["wall_s"] = round(time.monotonic() - t0, 1)
        report["rss_mb_peak"] = _peaks(rss)
        report["rss_samples"] = len(rss.samples)
        report["spill_drain"] = spill_drains(rss.spill, report["faults"])
        report["gateway_crashes"] = [
            {"from_s": a, "to_s": b} for a, b in dead_spans(rss.gateway_dead, every_s=2.0)
        ]
        report["gateway_errors"] = _log_errors(workdir / "gateway.log")
        if options.plot is not None and rss.samples:
            report["plot"] = str(_plot(rss, options.plot, report))
        if own and report["error"] is None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            report["workdir"] = str(workdir)
    totals_ = report.get("totals") or {}
    report["ok"] = (
        report["error"] is None and totals_.get("lost", 1) == 0 and not report["gateway_crashes"]
    )
    return report


def _start_edge(config: Path, workdir: Path) -> ManagedProcess:
    return ManagedProcess(
        "edge agent",
        [sys.executable, "-m", "gateway.cli", "edge", "run", "--config", str(config)],
        workdir / "edge-0.log",
        env=child_env(),
    )


def _wait_until_s(t_load: float, at_s: float, roles: _Roles, progress: Progress) -> None:
    next_print = 0.0
    while (left := at_s - (time.monotonic() - t_load)) > 0:
        now = time.monotonic()
        if now >= next_print:
            next_print = now + 30
            progress(f"t={now - t_load:6.0f} s  {_status(roles)}")
        time.sleep(min(left, 1.0))


def _status(roles: _Roles) -> str:
    gw = roles.gateway
    if gw is None or not gw.proc.alive():
        return "gateway down"
    try:
        text = httpx.get(f"http://127.0.0.1:{gw.metrics_port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return "gateway not answering"
    figures = {}
    for line in text.splitlines():
        for name in ("sensorgate_readings_in_total", "sensorgate_spill_points"):
            if line.startswith(name + " "):
                figures[name] = float(line.split()[1])
    return (
        f"gateway readings in {figures.get('sensorgate_readings_in_total', 0):,.0f} (since its"
        f" start), spill {figures.get('sensorgate_spill_points', 0):,.0f} points"
    )


def _inject(
    event: ChaosEvent,
    roles: _Roles,
    settings: GatewaySettings,
    workdir: Path,
    report: dict[str, Any],
    rss: _Rss,
    t0: float,
    progress: Progress,
) -> None:
    start = time.monotonic() - t0
    label = event.action.value
    progress(f"FAULT {label}" + (f" for {event.down_s:.0f} s" if event.down_s else ""))
    roles.faulting = True
    try:
        _undo_after(event, roles, settings, workdir, report)
    finally:
        roles.faulting = False
    end = time.monotonic() - t0
    rss.marks.append((start, end, label))
    report["faults"].append({"action": label, "from_s": round(start, 1), "to_s": round(end, 1)})
    progress(f"FAULT {label} undone after {end - start:.0f} s")


def _undo_after(
    event: ChaosEvent,
    roles: _Roles,
    settings: GatewaySettings,
    workdir: Path,
    report: dict[str, Any],
) -> None:
    if event.action is Action.KILL_GATEWAY:
        assert roles.gateway is not None
        _sigkill(roles.gateway.proc)
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
        _sigkill(roles.edge)
        time.sleep(event.down_s)
        roles.edge = _start_edge(workdir / "edge-0.toml", workdir)
        report["edge_restarts"] += 1


def dead_spans(times: list[float], *, every_s: float) -> list[tuple[float, float]]:
    """Group sample times into spans; a gap of over two sampling periods starts a new one."""
    spans: list[tuple[float, float]] = []
    for t in sorted(times):
        if spans and t - spans[-1][1] <= 2 * every_s:
            spans[-1] = (spans[-1][0], t)
        else:
            spans.append((t, t))
    return [(round(a, 1), round(b, 1)) for a, b in spans]


def _log_errors(path: Path) -> list[str]:
    """Return the distinct exception lines of a log (``SomeError: ...`` starting a line)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    found = re.findall(r"^[\w.]+(?:Error|Exception): .*$", text, flags=re.MULTILINE)
    return list(dict.fromkeys(found))[:10]


def _sigkill(proc: ManagedProcess) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    proc.proc.wait(30)
    proc.stop()  # closes its log


def _sample_rss(roles: _Roles, rss: _Rss, t0: float, stop: threading.Event) -> None:
    while not stop.wait(2.0):
        t = time.monotonic() - t0
        for name, proc in _members(roles).items():
            try:
                rss.samples.append((t, name, psutil.Process(proc).memory_info().rss / 2**20))
            except psutil.Error:
                continue
        gw = roles.gateway
        if gw is not None and not roles.faulting and not gw.proc.alive():
            rss.gateway_dead.append(t)
        spill = _gateway_figure(roles, "sensorgate_spill_points")
        if spill is not None:
            rss.spill.append((t, spill))


def _gateway_figure(roles: _Roles, name: str) -> float | None:
    gw = roles.gateway
    if gw is None or not gw.proc.alive():
        return None
    try:
        text = httpx.get(f"http://127.0.0.1:{gw.metrics_port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def spill_drains(
    samples: list[tuple[float, float]], faults: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Return, for each influxd outage, the peak of the gateway's spill and its drain.

    The drain is how long after influxd was back the spill was empty again (None: never
    within the samples).
    """
    out = []
    for fault in faults:
        if fault["action"] != Action.STOP_INFLUXD.value:
            continue
        after = [(t, n) for t, n in samples if t >= fault["from_s"]]
        peak = max((n for _t, n in after), default=0.0)
        empty = next((t for t, n in after if t >= fault["to_s"] and n == 0), None)
        out.append(
            {
                "influxd_down_s": [fault["from_s"], fault["to_s"]],
                "spill_peak_points": int(peak),
                "spill_empty_after_s": None if empty is None else round(empty - fault["to_s"], 1),
            }
        )
    return out


def _members(roles: _Roles) -> dict[str, int]:
    out = {"chaos driver": os.getpid()}
    gw = roles.gateway
    if gw is not None and gw.proc.alive():
        out["gateway"] = gw.pid
    for name, proc in (
        ("mosquitto", roles.mosquitto),
        ("influxd", roles.influxd),
        ("edge agent", roles.edge),
        ("fleet (simulated agents)", roles.fleet),
    ):
        if proc is not None and proc.alive():
            out[name] = proc.pid
    return out


def _drain_outbox(path: Path, port: int) -> int:
    """Send what an agent left in its outbox (QoS 1), deleting each event on its PUBACK."""
    from edge.outbox import Outbox

    outbox = Outbox(path)
    try:
        items = outbox.peek(limit=1_000_000)
        if not items:
            return 0
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", port)
        client.loop_start()
        try:
            infos = [(item.id, client.publish(item.topic, item.payload, qos=1)) for item in items]
            for _id, info in infos:
                info.wait_for_publish(30)
            outbox.ack([i for i, info in infos if info.is_published()])
        finally:
            client.loop_stop()
            client.disconnect()
        return len(items)
    finally:
        outbox.close()


def _outbox_figures(path: Path, device: str) -> tuple[int, int, int]:
    from edge.outbox import Outbox

    outbox = Outbox(path)
    try:
        return outbox.next_sequence(device), outbox.stats().dropped_total, outbox.depth
    finally:
        outbox.close()


def _query(influx: Influxd, q: str) -> list[dict[str, Any]]:
    doc = influx._get("/query", db=DATABASE, q=q).json()
    result = (doc.get("results") or [{}])[0]
    if "error" in result:
        raise SensorGateError(f"influxd refused {q!r}: {result['error']}")
    return list(result.get("series") or [])


def _by_device(influx: Influxd, q: str) -> dict[str, int]:
    return {
        s["tags"]["device"]: int(s["values"][0][1] or 0)
        for s in _query(influx, q + ' GROUP BY "device"')
    }


def _await_and_count(
    influx: Influxd,
    layout: StorageLayout,
    workdir: Path,
    options: ChaosOptions,
    roles: _Roles,
    progress: Progress,
) -> tuple[list[DeviceTally], float | None]:
    """Wait for the stored readings and the windows; return the tallies and a moment.

    The moment (monotonic) is when InfluxDB held every published reading (None: never).
    """
    devices = [f"dev-{i}" for i in range(options.devices)]
    outbox = {d: _outbox_figures(workdir / f"outbox-{i}.db", d) for i, d in enumerate(devices)}
    want = sum(PER_EVENT * (events - 1) for events, _d, _p in outbox.values())
    raw, late_src, agg_src = layout.readings, layout.late_readings, layout.aggregates

    def stored() -> int:
        try:
            return sum(_by_device(influx, f'SELECT count("value") FROM {raw}').values())
        except SensorGateError:
            return -1

    progress(f"waiting until InfluxDB holds the {want:,}+ published readings")
    got = _settle(stored, lambda n: n >= want, options.drain_timeout_s, 60.0, progress, "stored")
    stored_at = time.monotonic() if got >= want else None

    def folded() -> int:
        try:
            agg = _by_device(
                influx, f'SELECT sum("count") FROM {agg_src} WHERE "window" = \'{WINDOW}\''
            )
            late = _by_device(influx, f'SELECT count("value") FROM {late_src}')
        except SensorGateError:
            return -1
        return sum(agg.values()) + sum(late.values())

    progress("waiting until every window has closed")
    _settle(folded, lambda n: n >= stored(), 300.0, 45.0, progress, "in windows or late")
    count = _by_device(influx, f'SELECT count("value") FROM {raw}')
    distinct = _by_device(influx, f'SELECT count(distinct("seq")) FROM {raw}')
    agg = _by_device(influx, f'SELECT sum("count") FROM {agg_src} WHERE "window" = \'{WINDOW}\'')
    late = _by_device(influx, f'SELECT count("value") FROM {late_src}')
    out = []
    for d in devices:
        events, dropped, pending = outbox[d]
        last = _query(
            influx,
            f'SELECT count("value") FROM {raw} WHERE "device" = \'{d}\' AND "seq" = {events - 1}',
        )
        out.append(
            DeviceTally(
                device=d,
                events=events,
                dropped=dropped,
                pending=pending,
                last_event_readings=int(last[0]["values"][0][1]) if last else None,
                stored=count.get(d, 0),
                stored_events=distinct.get(d, 0),
                windowed=agg.get(d, 0),
                late=late.get(d, 0),
                readings_per_event=PER_EVENT,
            )
        )
    return out, stored_at


def _settle(
    read: Callable[[], int],
    done: Callable[[int], bool],
    timeout_s: float,
    still_s: float,
    progress: Progress,
    what: str,
) -> int:
    deadline = time.monotonic() + timeout_s
    last, changed, printed = -2, time.monotonic(), 0.0
    while True:
        value = read()
        if value >= 0 and done(value):
            return value
        now = time.monotonic()
        if value != last:
            last, changed = value, now
        if now - printed > 15:
            printed = now
            progress(f"{what}: {value:,}")
        if now - changed > still_s or now > deadline:
            return value
        time.sleep(2.0)


def _deadletters(influx: Influxd, layout: StorageLayout) -> dict[str, int]:
    series = _query(influx, f'SELECT count("error") FROM {layout.deadletters} GROUP BY "reason"')
    return {s["tags"]["reason"]: int(s["values"][0][1]) for s in series}


def _peaks(rss: _Rss) -> dict[str, float]:
    peaks: dict[str, float] = {}
    for _t, name, mb in rss.samples:
        peaks[name] = round(max(peaks.get(name, 0.0), mb), 1)
    return peaks


def _plot(rss: _Rss, path: Path, report: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(13, 5.5))
    names = sorted({n for _t, n, _m in rss.samples})
    for name in names:
        points = [(t, mb) for t, n, mb in rss.samples if n == name]
        ax.plot([p[0] for p in points], [p[1] for p in points], ".", ms=2.5, label=name)
    for start, end, label in rss.marks:
        ax.axvspan(start, max(end, start + 2), color="0.85", zorder=0)
        ax.text(
            start,
            ax.get_ylim()[1] * 0.97,
            label.replace("_", " "),
            rotation=90,
            va="top",
            ha="right",
            fontsize=8,
        )
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title(
        f"sensorgate chaos: {report['minutes']:g} min at {report['rate']:,.0f} readings/s,"
        " RSS of every process (grey: faults)"
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, markerscale=4)
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def dumps(report: dict[str, Any]) -> str:
    """Return the report as JSON text."""
    return json.dumps(report, indent=2, default=str)
