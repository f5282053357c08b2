"""Start and stop the local services: mosquitto and influxd as child processes.

Used by the integration tests and by ``sensorgate up``. Each service runs on a free
loopback port with a generated config and a throwaway data directory; readiness is
awaited (TCP accept for mosquitto, ``GET /ping`` for influxd), never slept on. The
children are tied to their parent with ``PR_SET_PDEATHSIG`` so that they die with it
even when the parent is killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import getpass
import logging
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from contract.errors import ServiceError

__all__ = [
    "LocalServices",
    "ManagedProcess",
    "ServiceEndpoints",
    "find_binary",
    "free_port",
    "start_influxd",
    "start_mosquitto",
    "start_victoria_metrics",
]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_PACKAGES = {
    "mosquitto": "mosquitto",
    "influxd": "influxdb",
    "victoria-metrics": "victoria-metrics",
}


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


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now.

    Picked at random below the kernel's ephemeral range: a port the kernel hands out
    (``bind(0)``) is also what outgoing connections get as their local port, so under
    load another process's connection could take it before the service binds it.
    """
    low = _ephemeral_low()
    if low > 12_000:
        for _ in range(64):
            port = random.randrange(10_000, low)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> str:
    """Return the path of a service binary, or raise with the package to install."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN_DIRS])
    path = shutil.which(name, path=search)
    if path is None:
        package = _PACKAGES.get(name, name)
        raise ServiceError(
            f"{name} not found on PATH or in {', '.join(_SBIN_DIRS)}."
            f" Install it with: sudo apt-get install -y {package}"
            " (or run `make test` / `make up` as root, which installs it)"
        )
    return path


def _die_with_parent() -> None:  # pragma: no cover - runs in the child after fork
    # Without this a SIGKILLed parent would leave orphaned brokers behind.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


BROKER_FD_LIMIT = 1_048_576
"""Open files mosquitto may hold: one per client connection. Lifted as far as the
system allows (the hard limit, or this much for a privileged parent)."""


def _broker_child() -> None:  # pragma: no cover - runs in the child after fork
    _die_with_parent()
    # mosquitto holds one descriptor per client; the usual soft limit of 1,024 would
    # refuse a simulated fleet of one connection per device long before the broker
    # runs out of anything else.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (BROKER_FD_LIMIT, BROKER_FD_LIMIT))
    except (ValueError, OSError):  # not privileged: as far as the hard limit goes
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class ManagedProcess:
    """A child process that dies with its parent and is stopped gently, then firmly."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        own_log: Path | None = None,
        preexec: Callable[[], None] = _die_with_parent,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._tail_paths = [log_path] if own_log is None else [own_log, log_path]
        self._log = log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                env=env,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                preexec_fn=preexec,
                # Own process group: a Ctrl-C in the terminal reaches us, and we stop
                # the services in order, instead of it killing them mid-write.
                start_new_session=True,
            )
        except OSError as exc:
            self._log.close()
            raise ServiceError(f"cannot start {name} ({argv[0]}): {exc}") from exc

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    def alive(self) -> bool:
        """Whether the child is still running."""
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """Return the last lines the child wrote, to explain a failure."""
        text = ""
        for path in self._tail_paths:
            try:
                text += path.read_text(errors="replace")
            except OSError:
                continue
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait, then SIGKILL; idempotent."""
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", self.name, timeout)
                self.proc.kill()
                self.proc.wait(timeout)
        self._log.close()


def _wait_until(ready: Callable[[], bool], proc: ManagedProcess, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if not proc.alive():
            proc.stop()
            raise ServiceError(
                f"{proc.name} exited with code {proc.proc.returncode} before {what}."
                f" Its log:\n{proc.log_tail()}"
            )
        if ready():
            return
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
    proc.stop()
    raise ServiceError(
        f"{proc.name} did not become ready ({what}) within {timeout:.0f} s."
        f" Its log ({proc.log_path}):\n{proc.log_tail()}"
    )


def _answers(url: str, status: int) -> bool:
    """Whether ``GET url`` answers ``status`` right now (readiness probes)."""
    try:
        return httpx.get(url, timeout=0.5).status_code == status
    except httpx.HTTPError:
        return False


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself holds a listening TCP socket on ``port``.

    A plain TCP connect could be answered by another process already on the port. The
    socket tables are read from ``/proc/PID/net``, the child's own network namespace,
    so a service started inside another namespace (``ip netns exec``) is seen too.
    """
    inodes = set()
    for table in (f"/proc/{pid}/net/tcp", f"/proc/{pid}/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return False
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd) in inodes:
                return True
        except OSError:
            continue
    return False


def _retry_port_clash(
    start: Callable[[], tuple[ManagedProcess, int]],
) -> tuple[ManagedProcess, int]:
    # A port found free can be taken by another process before the service binds it
    # (parallel test runs); pick another one a few times before giving up.
    for attempt in range(3):
        try:
            return start()
        except ServiceError as exc:
            if "address already in use" not in str(exc).lower() or attempt == 2:
                raise
            log.info("port clash, retrying on another port: %s", str(exc).splitlines()[0])
    raise AssertionError("unreachable")


def start_mosquitto(
    workdir: Path, *, host: str = "127.0.0.1", port: int | None = None, timeout: float = 15.0
) -> tuple[ManagedProcess, int]:
    """Start mosquitto with a generated config under ``workdir``; return it and its port."""
    if port is None:
        return _retry_port_clash(
            lambda: start_mosquitto(workdir, host=host, port=free_port(host), timeout=timeout)
        )
    binary = find_binary("mosquitto")
    data = workdir / "mosquitto"
    data.mkdir(parents=True, exist_ok=True)
    conf = data / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                f"listener {port} {host}",
                "allow_anonymous true",
                "persistence true",
                f"persistence_location {data}/",
                # A gateway holds acks until its epoch commits: the default of 20
                # in-flight messages per client would stall it (docs/security.md).
                "max_inflight_messages 0",
                "max_queued_messages 1000000",
                "max_queued_bytes 0",
                # No cap on clients (-1, mosquitto's default, said out loud): a simulated
                # fleet holds one connection per device. The open-file limit is the real
                # bound; the child raises it (_broker_child).
                "max_connections -1",
                "set_tcp_nodelay true",
                # Running as root, mosquitto would switch to its own user, and a change
                # of credentials clears PR_SET_PDEATHSIG: stay who we are instead.
                f"user {getpass.getuser()}",
                "log_dest stdout",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "",
            ]
        )
    )
    proc = ManagedProcess(
        "mosquitto", [binary, "-c", str(conf)], data / "mosquitto.log", preexec=_broker_child
    )
    _wait_until(lambda: _listens(proc.pid, port), proc, timeout, f"listening on {host}:{port}")
    return proc, port


def start_influxd(
    workdir: Path, *, host: str = "127.0.0.1", port: int | None = None, timeout: float = 60.0
) -> tuple[ManagedProcess, int]:
    """Start influxd 1.x with a generated config under ``workdir``; return it and its port."""
    if port is None:
        return _retry_port_clash(
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
    _wait_until(lambda: _answers(url, 204), proc, timeout, f"answering {url}")
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
        return _retry_port_clash(
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
    _wait_until(lambda: _answers(url, 200), proc, timeout, f"answering {url}")
    return proc, port
