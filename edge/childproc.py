"""Child processes for the local services: started, awaited, stopped, never orphaned.

A service (mosquitto, influxd, ...) runs as a :class:`ManagedProcess` on a port from
:func:`free_port`; readiness is awaited with :func:`wait_until` (never slept on), and
:func:`listens` checks that the child itself holds the port. Each child is tied to its
parent with ``PR_SET_PDEATHSIG`` so that it dies with it even when the parent is
killed with SIGKILL.

Standard library and :mod:`contract.errors` only: the edge bench
(:mod:`edge.bench`) and the gateway's local stack (:mod:`gateway.localstack`) share it,
and the edge never imports the gateway.
"""

from __future__ import annotations

import ctypes
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from contract.errors import ServiceError

__all__ = [
    "ManagedProcess",
    "die_with_parent",
    "find_binary",
    "free_port",
    "listens",
    "retry_port_clash",
    "wait_until",
]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_PACKAGES = {
    "mosquitto": "mosquitto",
    "influxd": "influxdb",
    "victoria-metrics": "victoria-metrics",
}


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


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
            with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
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


def die_with_parent() -> None:  # pragma: no cover - runs in the child after fork
    """Ask the kernel to SIGTERM this (child) process when its parent dies."""
    # Without this a SIGKILLed parent would leave orphaned brokers behind.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


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
        preexec: Callable[[], None] = die_with_parent,
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


def wait_until(ready: Callable[[], bool], proc: ManagedProcess, timeout: float, what: str) -> None:
    """Poll ``ready()`` until it holds; stop ``proc`` and raise if it dies or time runs out."""
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


def listens(pid: int, port: int) -> bool:
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


def retry_port_clash(
    start: Callable[[], tuple[ManagedProcess, int]],
) -> tuple[ManagedProcess, int]:
    """Call ``start`` (which picks a free port) again when the port was taken meanwhile."""
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
