"""A cluster's addresses: given (``host:port;host:port``, checked), or picked free.

Free ports are picked below the ephemeral range, where only an explicit bind takes a
port (see :func:`free_listen_ports`).
"""

from __future__ import annotations

import re
from pathlib import Path

from contract.errors import ConfigError

__all__ = ["free_listen_ports", "loopback_addresses", "parse_addresses"]

_ADDRESS = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:;\[\]]+):(?P<port>\d{1,5})$")


def parse_addresses(text: str) -> tuple[str, ...]:
    """Split ``"host:port;host:port"``, refusing anything that is not ``host:port``."""
    parts = tuple(p.strip() for p in text.split(";") if p.strip())
    if not parts:
        raise ConfigError("addresses", f'expected "host:port;host:port"; got {text!r}')
    for part in parts:
        match = _ADDRESS.match(part)
        if match is None or not 1 <= int(match["port"]) <= 65535:
            raise ConfigError("addresses", f"expected host:port (port 1-65535); got {part!r}")
    if len(set(parts)) != len(parts):
        raise ConfigError("addresses", f"every process needs its own address; got {text!r}")
    return parts


_LISTEN_FLOOR = 10_000


def _ephemeral_floor() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_listen_ports(
    count: int, host: str = "127.0.0.1", *, consecutive: bool = False
) -> list[int]:
    """Return ``count`` ports free on ``host`` now, below the ephemeral range.

    A port from the ephemeral range (what binding port 0 gives) can be taken, between
    the pick and the bind, as the *source* port of any outgoing connection: Bytewax
    processes connecting to their peers, MQTT clients. Below that range only an
    explicit bind takes a port. ``consecutive``: ``count`` ports in a row.
    """
    import random
    import socket

    top = _ephemeral_floor()
    if top - _LISTEN_FLOOR < count:
        raise ConfigError("addresses", f"no room for {count} ports below {top}")

    def free(port: int) -> bool:
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
        return True

    for _ in range(1_000):
        if consecutive:
            base = random.randrange(_LISTEN_FLOOR, top - count)
            ports = list(range(base, base + count))
        else:
            ports = random.sample(range(_LISTEN_FLOOR, top), count)
        if all(free(p) for p in ports):
            return ports
    raise ConfigError("addresses", f"found no {count} free ports on {host} below {top}")


def loopback_addresses(processes: int) -> tuple[str, ...]:
    """Return ``processes`` addresses on free loopback ports (picked now)."""
    return tuple(f"127.0.0.1:{port}" for port in sorted(free_listen_ports(processes)))
