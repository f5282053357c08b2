"""``sensorgate up``: the whole local stack in one command.

Starts mosquitto and influxd (unless external ones are configured), the gateway in
its own process (which also serves the web dashboard, on port 8080 or any free port
when 8080 is taken), and, once the gateway has subscribed, a small simulated fleet;
prints where everything is, the dashboard's URL with its access token (passed to the
gateway in its environment, never in argv), and live counts until Ctrl-C (or
``--duration``); then stops everything in order.

The fleet is the ``demo`` scenario (:mod:`simulators.demo`): the temperature of
``demo-000`` jumps by 8 °C for 30 s at 40 s after the fleet starts and every 4 minutes
after, so an explained anomaly alarm shows on the dashboard and in ``sensorgate
alerts`` within the first minute. Without a configured rules file the gateway runs
:data:`~simulators.demo.DEMO_RULES` (the defaults; anomaly alarms clear after 30 s off).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from contract.errors import ServiceError, StorageError
from edge.mqtt import MqttSettings
from gateway.influx.query import InfluxQL
from gateway.localstack.services import LocalServices, ManagedProcess, free_port
from gateway.settings import GatewaySettings, load_settings, settings_env
from simulators.demo import DEMO_ANOMALY_DEVICE, DEMO_RULES, start_demo_fleet

__all__ = ["DASHBOARD_PORT", "DEMO_ANOMALY", "Counts", "run_up"]

DEMO_WINDOWS = ("10s", "1m")
"""The demo stack's windows, unless the user configured some."""

DASHBOARD_PORT = 8080
READY_TIMEOUT_S = 120.0
"""How long the gateway may take to subscribe before the fleet starts anyway."""

DEMO_ANOMALY = {
    "site": "demo",
    "device": DEMO_ANOMALY_DEVICE,
    "series": "env/temperature",
    "what": "+8 °C for 30 s, 40 s after the fleet starts, then every 4 minutes",
}
"""What the demo injects, and where to look for its alarm."""


@dataclass
class Counts:
    """Live figures of the running stack."""

    elapsed_s: float = 0.0
    published: int = 0
    stored: int | None = None
    """Readings in InfluxDB (None until the database answers)."""
    deadletters: int | None = None


def _count(q: InfluxQL, statement: str) -> int | None:
    try:
        return int(q.scalar(statement, 0))
    except StorageError:
        return None


def run_up(
    *,
    devices: int = 5,
    interval_s: float = 1.0,
    duration_s: float | None = None,
    as_json: bool = False,
    dashboard_port: int = DASHBOARD_PORT,
) -> int:
    """Run the stack until Ctrl-C, SIGTERM or ``duration_s``; return the exit code.

    The dashboard listens on ``dashboard_port`` if it is free, else on any free port
    (0: any free port from the start).
    """
    console = Console(stderr=False)
    base = load_settings()
    external = "mqtt" in base.model_fields_set and "influx" in base.model_fields_set
    local: LocalServices | None = None
    gateway: ManagedProcess | None = None
    fleet = None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Ctrl-C sets the same event rather than relying on KeyboardInterrupt, which Python
    # does not raise when the parent started us with SIGINT ignored (a shell's `&`).
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emit = _emit
    try:
        local = None if external else LocalServices()
        settings = _stack_settings(base, local)
        dashboard_port = _free_port(dashboard_port) if dashboard_port else free_port()
        settings, dashboard_url = _dashboard_token(settings, dashboard_port)
        gateway = _start_gateway(settings, local.workdir if local else Path.cwd(), dashboard_port)
        # Readings sent before the gateway subscribes are lost: start the fleet after.
        _wait_ready(settings, gateway, stop)
        fleet = start_demo_fleet(
            MqttSettings(host=settings.mqtt.host, port=settings.mqtt.port),
            settings.topics,
            devices=devices,
        )
        where = _where(settings, dashboard_url, gateway, local)
        if as_json:
            emit({"event": "ready", **where})
        else:
            _print_where(console, where)
        counts = _watch(
            settings, fleet, gateway, stop, interval_s, duration_s, as_json, emit, console
        )
    except KeyboardInterrupt:
        counts = None
    finally:
        _stop_all(fleet, gateway, local)
    if counts is not None:
        if as_json:
            emit({"event": "summary", **asdict(counts)})
        else:
            _print_summary(console, counts)
    return 0


def _stop_all(fleet: Any, gateway: ManagedProcess | None, local: LocalServices | None) -> None:
    """Stop the fleet, then the gateway, then the services; log how long each took."""
    steps: list[tuple[str, Any]] = []
    if fleet is not None:
        steps.append(("fleet", fleet.stop))
    if gateway is not None:
        steps.append(("gateway", lambda: gateway.stop(timeout=15)))
    if local is not None:
        steps.append(("mosquitto and influxd", local.stop))
    for name, step in steps:
        began = time.monotonic()
        step()
        # On stderr, also with --json: a slow stop shows which part took the time.
        print(f"stopped the {name} in {time.monotonic() - began:.1f} s", file=sys.stderr)


def _emit(doc: dict[str, Any]) -> None:
    """Print one JSON line (``--json``)."""
    print(json.dumps(doc), flush=True)


def _stack_settings(base: GatewaySettings, local: LocalServices | None) -> GatewaySettings:
    """Start the local services (unless external ones are configured); return the settings.

    The demo's rules and windows apply unless the user configured some.
    """
    settings = base
    if local is not None:
        ep = local.start()
        settings = load_settings(
            mqtt={**base.mqtt.model_dump(), "host": ep.mqtt_host, "port": ep.mqtt_port},
            influx={
                **base.influx.model_dump(),
                "url": ep.influx_url,
                "spill_dir": local.workdir / "spill",  # throwaway, like the data
            },
            recovery_dir=local.workdir / "recovery",  # state of throwaway data
            # A fixed port could clash with another gateway on this machine.
            metrics_port=free_port(),
        )
    if settings.rules_file is None:  # the demo's rules, unless the user has some
        settings = settings.model_copy(update={"rules_file": DEMO_RULES})
    if "windows" not in base.stream.model_fields_set:
        # People watch a demo for minutes: with 10 s windows beside 1 m the charts
        # show aggregates, and the expected band (5 buckets of history), within a
        # minute instead of six. The cost is nothing at the demo fleet's size.
        settings = settings.model_copy(
            update={"stream": settings.stream.model_copy(update={"windows": DEMO_WINDOWS})}
        )
    return settings


def _start_gateway(settings: GatewaySettings, workdir: Path, dashboard_port: int) -> ManagedProcess:
    """Start the gateway (and its dashboard) as a child process."""
    return ManagedProcess(
        "gateway",
        [
            *(sys.executable, "-m", "gateway.cli", "gateway", "run"),
            *("--dashboard-port", str(dashboard_port)),
        ],
        workdir / "gateway.log",
        # The dashboard's token goes in the environment (SENSORGATE_DASHBOARD__TOKEN),
        # which only this user can read, never in argv, which everyone can (ps).
        env={**os.environ, **settings_env(settings)},
    )


def _where(
    settings: GatewaySettings,
    dashboard_url: str,
    gateway: ManagedProcess,
    local: LocalServices | None,
) -> dict[str, Any]:
    """Return where everything is: URLs, the log, the rules, the demo anomaly, the pids."""
    return {
        "dashboard_url": dashboard_url,
        "mqtt_url": settings.mqtt.url,
        "influx_url": settings.influx.url,
        "database": settings.influx.database,
        "topic_prefix": settings.topic_prefix,
        "metrics_url": f"http://{settings.metrics_host}:{settings.metrics_port}/metrics",
        "gateway_log": str(gateway.log_path),
        "rules": str(settings.rules_file),
        "demo_anomaly": DEMO_ANOMALY,
        "pids": {
            "gateway": gateway.pid,
            **({"mosquitto": local.mosquitto.pid} if local and local.mosquitto else {}),
            **({"influxd": local.influxd.pid} if local and local.influxd else {}),
        },
    }


def _wait_ready(settings: GatewaySettings, gateway: ManagedProcess, stop: threading.Event) -> None:
    """Wait until the gateway's ``/healthz`` says it is subscribed and InfluxDB answers."""
    if not settings.metrics_port:
        return  # no health endpoint to ask
    import httpx

    url = f"http://{settings.metrics_host}:{settings.metrics_port}/healthz"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and not stop.is_set():
        if not gateway.alive():
            raise ServiceError(
                f"the gateway exited with code {gateway.proc.returncode}."
                f" Its log ({gateway.log_path}):\n{gateway.log_tail()}"
            )
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        stop.wait(0.2)


def _dashboard_token(settings: GatewaySettings, port: int) -> tuple[GatewaySettings, str]:
    """Return the settings with the dashboard's token, and the URL to show.

    A token the user configured (variable or file) is kept and not shown; otherwise a
    fresh one is made and shown once, in the URL (the local stack's own terminal).
    """
    url = f"http://127.0.0.1:{port}/"
    dash = settings.dashboard
    if dash.token is not None or dash.token_file is not None:
        return settings, url
    token = secrets.token_urlsafe(16)
    dash = dash.model_copy(update={"token": SecretStr(token)})
    return settings.model_copy(update={"dashboard": dash}), f"{url}?token={token}"


def _free_port(preferred: int) -> int:
    """Return ``preferred`` if it is free on the loopback, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise ServiceError("no free loopback port for the dashboard")


def _watch(
    settings: GatewaySettings,
    fleet: Any,
    gateway: ManagedProcess,
    stop: threading.Event,
    interval_s: float,
    duration_s: float | None,
    as_json: bool,
    emit: Any,
    console: Console,
) -> Counts:
    q = InfluxQL(settings.influx)
    started = time.monotonic()
    counts = Counts()
    try:
        while not stop.is_set():
            if not gateway.alive():
                raise ServiceError(
                    f"the gateway exited with code {gateway.proc.returncode}."
                    f" Its log ({gateway.log_path}):\n{gateway.log_tail()}"
                )
            counts = Counts(
                elapsed_s=round(time.monotonic() - started, 1),
                published=fleet.published_readings,
                stored=_count(q, f"SELECT count(value) FROM {q.layout.readings}"),
                deadletters=_count(q, f"SELECT count(size) FROM {q.layout.deadletters}"),
            )
            if as_json:
                emit({"event": "counts", **asdict(counts)})
            else:
                console.print(
                    f"[{counts.elapsed_s:7.1f} s] readings published {counts.published:>8}"
                    f"  stored {_show(counts.stored):>8}"
                    f"  dead letters {_show(counts.deadletters):>5}",
                    highlight=False,
                )
            if duration_s is not None and time.monotonic() - started >= duration_s:
                break
            stop.wait(interval_s)
    except KeyboardInterrupt:
        pass
    finally:
        q.close()
    return counts


def _print_where(console: Console, where: dict[str, Any]) -> None:
    table = Table(title="SensorGate is up", show_header=False)
    table.add_row("dashboard", where["dashboard_url"])
    table.add_row("metrics", where["metrics_url"])
    table.add_row("MQTT broker", where["mqtt_url"])
    table.add_row("InfluxDB", where["influx_url"])
    table.add_row("database", where["database"])
    table.add_row("topics", f"{where['topic_prefix']}/{{site}}/{{device}}/telemetry")
    table.add_row("gateway log", where["gateway_log"])
    table.add_row("alarm rules", where["rules"])
    demo = where["demo_anomaly"]
    table.add_row(
        "demo anomaly",
        f"{demo['site']}/{demo['device']} {demo['series']}: {demo['what']}",
    )
    console.print(table)
    console.print(
        "Its alarm shows on the dashboard (fleet page, then the device page: the expected"
        " band and the detector's band at the alarm) and in `sensorgate alerts`."
    )
    console.print("Live counts below. Ctrl-C stops everything.")


def _print_summary(console: Console, counts: Counts) -> None:
    table = Table(title="Summary")
    for column in ("seconds", "readings published", "readings stored", "dead letters"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{counts.elapsed_s:.1f}",
        str(counts.published),
        _show(counts.stored),
        _show(counts.deadletters),
    )
    console.print(table)


def _show(value: int | None) -> str:
    return "-" if value is None else str(value)
