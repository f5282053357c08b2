"""A private LAN of Linux network namespaces for cluster tests (root and iproute2 only).

Layout: one *hub* namespace holding a bridge, and one namespace per *host*, joined to
the bridge by a veth pair whose host end is ``eth0`` with an address in the benchmark
range 198.18.0.0/15 (RFC 2544). Nothing is created in the caller's own namespace: the
veth pairs are made inside the hub, and no address or route of the host changes.

Names carry a per-run token (``sg<token>-<role>``), so parallel runs do not collide,
and :meth:`Lan.close` kills whatever still runs in them and deletes them.

:func:`inside` moves the *calling thread* into a namespace for a while (``setns``):
sockets it opens, and processes or threads it starts, belong to that namespace even
after the thread has left it. Tests use it to start mosquitto and influxd in the
services' namespace and to talk to them as a client there.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["Host", "Lan", "inside", "netns_unavailable"]

_CLONE_NEWNET = 0x40000000
SUBNET = "198.18.0"
"""First three octets of the test LAN (/24 inside 198.18.0.0/15)."""


def netns_unavailable() -> str | None:
    """Return why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); run the tests as root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"sgprobe{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed here: {made.stderr.strip() or made.returncode}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


@dataclass(frozen=True)
class Host:
    """One namespace on the LAN."""

    netns: str
    address: str

    def exec_prefix(self) -> list[str]:
        """Return the command prefix that runs a program in this namespace."""
        return ["ip", "netns", "exec", self.netns]

    def pids(self) -> list[int]:
        """Return the processes that run in this namespace now."""
        done = subprocess.run(
            ["ip", "netns", "pids", self.netns], capture_output=True, text=True, check=False
        )
        # Never ourselves: a thread of this process may be inside (see inside()).
        return [int(p) for p in done.stdout.split() if int(p) != os.getpid()]


@dataclass
class Lan:
    """Namespaces on one bridge; build with :meth:`create`, always :meth:`close`."""

    token: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    hosts: dict[str, Host] = field(default_factory=dict)
    _made: list[str] = field(default_factory=list)

    @property
    def hub(self) -> str:
        """The namespace that holds the bridge."""
        return f"sg{self.token}-hub"

    def name(self, role: str) -> str:
        """Return the namespace name of ``role`` in this LAN."""
        return f"sg{self.token}-{role}"

    def create(self) -> Lan:
        """Make the hub namespace and its bridge."""
        self._add(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        return self

    def _add(self, netns: str) -> None:
        _ip("netns", "add", netns)
        self._made.append(netns)
        _ip("-n", netns, "link", "set", "lo", "up")

    def add_host(self, role: str, last_octet: int) -> Host:
        """Make a namespace for ``role`` with ``eth0`` at 198.18.0.``last_octet``."""
        netns = self.name(role)
        self._add(netns)
        # The hub end is named in the hub (short: 15 characters at most); the other end
        # is created directly inside the host's namespace as eth0.
        hub_end = f"v{self.token}{len(self.hosts)}"
        _ip("-n", self.hub, "link", "add", hub_end, "type", "veth", "peer", "name", "eth0",
            "netns", netns)  # fmt: skip
        _ip("-n", self.hub, "link", "set", hub_end, "master", "br0", "up")
        address = f"{SUBNET}.{last_octet}"
        _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        host = Host(netns, address)
        self.hosts[role] = host
        return host

    def close(self) -> None:
        """Kill what still runs in the namespaces, then delete them (idempotent)."""
        for netns in reversed(self._made):
            host = Host(netns, "")
            for pid in host.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        self._made.clear()


@contextlib.contextmanager
def inside(netns: str) -> Iterator[None]:
    """Run the calling thread in ``netns`` for the duration of the block."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
        try:
            yield
        finally:
            if libc.setns(own, _CLONE_NEWNET) != 0:  # pragma: no cover - should not fail
                err = ctypes.get_errno()
                raise OSError(err, f"setns back to our namespace: {os.strerror(err)}")
    finally:
        os.close(target)
        os.close(own)
