"""Run the real gateway, in a thread of the test process or as its own process.

Plain helpers, imported by test modules; the fixtures built on them
(``gateway_settings``, ``running_gateway``, ``publisher``) live in this folder's
``conftest.py``, which no test module imports.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.influx.query import InfluxQL
from gateway.localstack.services import ManagedProcess
from gateway.observability.metrics import GatewayMetrics
from gateway.settings import GatewaySettings, settings_env
from tests.waiting import wait_for

__all__ = ["RunningGateway", "gateway_thread", "spawn_gateway", "wait_for", "wait_ready"]


@dataclass
class RunningGateway:
    """A gateway flow running in a thread: its settings, a query client and its metrics."""

    settings: GatewaySettings
    query: InfluxQL
    thread: threading.Thread
    stop: threading.Event
    metrics: GatewayMetrics


@contextlib.contextmanager
def gateway_thread(settings: GatewaySettings, *, workers: int = 1) -> Iterator[RunningGateway]:
    """Run the gateway flow in a thread of the test process; stop it on exit."""
    from gateway.app import prepare_storage, run_gateway

    prepare_storage(settings)
    stop = threading.Event()
    subscribed = threading.Event()
    metrics = GatewayMetrics()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_gateway(
                settings, workers=workers, stop=stop, subscribed=subscribed, metrics=metrics
            )
        except BaseException as exc:  # surfaced in the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="gateway", daemon=True)
    thread.start()
    query = InfluxQL(settings.influx)
    try:
        wait_for(lambda: subscribed.is_set() or bool(errors), 30, "the gateway's subscription")
        yield RunningGateway(settings, query, thread, stop, metrics)
    finally:
        stop.set()
        thread.join(30)
        query.close()
    assert not thread.is_alive(), "the gateway did not stop within 30 s"
    assert not errors, f"the gateway failed: {errors[0]!r}"


def spawn_gateway(
    settings: GatewaySettings, workdir: Path, name: str, *args: str
) -> ManagedProcess:
    """Start ``sensorgate gateway run`` as its own process, configured by ``settings``."""
    return ManagedProcess(
        name,
        [sys.executable, "-m", "gateway.cli", "gateway", "run", *args],
        workdir / f"{name}.log",
        env={**os.environ, **settings_env(settings)},
    )


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(proc: ManagedProcess, port: int, timeout: float = 60) -> None:
    """Wait until a spawned gateway answers ``/healthz`` on ``port``; fail if it exits."""

    def check() -> bool:
        assert proc.alive(), f"{proc.name} exited:\n{proc.log_tail()}"
        return _healthy(port)

    wait_for(check, timeout, f"{proc.name} ready on port {port}")
