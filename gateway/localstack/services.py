"""Start and stop the local services: mosquitto and influxd as child processes.

Used by the integration tests and by ``sensorgate up``. Each service runs on a free
loopback port with a generated config and a throwaway data directory; readiness is
awaited (TCP accept for mosquitto, ``GET /ping`` for influxd), never slept on. The
children are tied to their parent with ``PR_SET_PDEATHSIG`` so that they die with it
even when the parent is killed with SIGKILL.

The child-process plumbing (:mod:`edge.childproc`) and the broker
(:mod:`edge.localbroker`) live in ``edge``, which the edge bench shares and which may
not import the gateway; they are re-exported here for the gateway's callers.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from contract.errors import ServiceError
from edge.childproc import ManagedProcess, find_binary, free_port, retry_port_clash, wait_until
from edge.localbroker import BROKER_FD_LIMIT, start_mosquitto

__all__ = [
    "BROKER_FD_LIMIT",
    "LocalServices",
    "ManagedProcess",
    "ServiceEndpoints",
    "find_binary",
    "free_port",
    "start_influxd",
    "start_mosquitto",
    "start_victoria_metrics",
]


@dataclass(frozen=True, slots=True)
class ServiceEndpoints:
    """Where the services listen."""

    mqtt_host: str
    mqtt_port: int
    influx_url: str

    @property
    def mqtt_url(self) -> str:
        """The broker as a URL."""
        return f"mqtt://{self.mqtt_host}:{self.mqtt_port}"


def _answers(url: str, status: int) -> bool:
    """Whether ``GET url`` answers ``status`` right now (readiness probes)."""
    try:
        return httpx.get(url, timeout=0.5).status_code == status
    except httpx.HTTPError:
        return False


def start_influxd(
    workdir: Path, *, host: str = "127.0.0.1", port: int | None = None, timeout: float = 60.0
) -> tuple[ManagedProcess, int]:
    """Start influxd 1.x with a generated config under ``workdir``; return it and its port."""
    if port is None:
        return retry_port_clash(
            lambda: start_influxd(workdir, host=host, port=free_port(host), timeout=timeout)
        )
    binary = find_binary("influxd")
    rpc_port = free_port(host)
    data = workdir / "influxd"
    data.mkdir(parents=True, exist_ok=True)
    conf = data / "influxdb.conf"
    conf.write_text(
        "\n".join(
            [
                "reporting-disabled = true",
                f'bind-address = "{host}:{rpc_port}"',
                "[meta]",
                f'  dir = "{data}/meta"',
                "[data]",
                f'  dir = "{data}/data"',
                f'  wal-dir = "{data}/wal"',
                "  query-log-enabled = false",
                "[http]",
                f'  bind-address = "{host}:{port}"',
                "  log-enabled = false",
                "[monitor]",
                "  store-enabled = false",
                "[continuous_queries]",
                "  log-enabled = false",
                "",
            ]
        )
    )
    proc = ManagedProcess("influxd", [binary, "-config", str(conf)], data / "influxd.log")
    url = f"http://{host}:{port}/ping"
    wait_until(lambda: _answers(url, 204), proc, timeout, f"answering {url}")
    return proc, port


class LocalServices:
    """mosquitto and influxd for one session, in a throwaway directory.

    ``with LocalServices() as services: services.endpoints`` starts both and stops both.
    """

    def __init__(self, *, workdir: Path | None = None, keep_data: bool = False) -> None:
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="sensorgate-"))
        self._keep = keep_data
        self.mosquitto: ManagedProcess | None = None
        self.influxd: ManagedProcess | None = None
        self._endpoints: ServiceEndpoints | None = None

    @property
    def endpoints(self) -> ServiceEndpoints:
        """Where the running services listen."""
        if self._endpoints is None:
            raise ServiceError("the local services are not started")
        return self._endpoints

    def start(self) -> ServiceEndpoints:
        """Start both services and wait until both are ready."""
        try:
            self.mosquitto, mqtt_port = start_mosquitto(self.workdir)
            self.influxd, influx_port = start_influxd(self.workdir)
        except BaseException:
            self.stop()
            raise
        self._endpoints = ServiceEndpoints(
            "127.0.0.1", mqtt_port, f"http://127.0.0.1:{influx_port}"
        )
        return self._endpoints

    def stop(self) -> None:
        """Stop both services (idempotent) and remove the throwaway directory."""
        for proc in (self.influxd, self.mosquitto):
            if proc is not None:
                proc.stop()
        if self._own_dir and not self._keep:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.workdir)

    def __enter__(self) -> LocalServices:
        self.start()
        return self

    def __exit__(
        self,
        _t: type[BaseException] | None,
        _e: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_victoria_metrics(
    workdir: Path, *, host: str = "127.0.0.1", port: int | None = None, timeout: float = 30.0
) -> tuple[ManagedProcess, int]:
    """Start VictoriaMetrics, a real server for the InfluxDB v2 write path.

    influxd 1.6 has no ``/api/v2/write``; VictoriaMetrics accepts v2 line-protocol
    writes from ``influxdb-client``, so the v2 writer is tested against it.
    """
    if port is None:
        return retry_port_clash(
            lambda: start_victoria_metrics(
                workdir, host=host, port=free_port(host), timeout=timeout
            )
        )
    binary = find_binary("victoria-metrics")
    data = workdir / "victoria-metrics"
    data.mkdir(parents=True, exist_ok=True)
    proc = ManagedProcess(
        "victoria-metrics",
        [
            binary,
            f"-httpListenAddr={host}:{port}",
            f"-storageDataPath={data}/storage",
            "-loggerLevel=ERROR",
        ],
        data / "victoria-metrics.log",
    )
    url = f"http://{host}:{port}/health"
    wait_until(lambda: _answers(url, 200), proc, timeout, f"answering {url}")
    return proc, port
