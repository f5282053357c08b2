"""A mosquitto on this machine, as a child process with a generated config.

:func:`start_mosquitto` is the broker of the gateway's local stack
(:mod:`gateway.localstack.services`), the tests and the benchmarks, and of the edge
bench (:mod:`edge.bench`): one set of settings that matter to SensorGate (no
in-flight cap, deep queues, persistence, no cap on clients).
"""

from __future__ import annotations

import getpass
import resource
from pathlib import Path

from edge.childproc import (
    ManagedProcess,
    die_with_parent,
    find_binary,
    free_port,
    listens,
    retry_port_clash,
    wait_until,
)

__all__ = ["BROKER_FD_LIMIT", "start_mosquitto"]


BROKER_FD_LIMIT = 1_048_576
"""Open files mosquitto may hold: one per client connection. Lifted as far as the
system allows (the hard limit, or this much for a privileged parent)."""


def _broker_child() -> None:  # pragma: no cover - runs in the child after fork
    die_with_parent()
    # mosquitto holds one descriptor per client; the usual soft limit of 1,024 would
    # refuse a simulated fleet of one connection per device long before the broker
    # runs out of anything else.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (BROKER_FD_LIMIT, BROKER_FD_LIMIT))
    except (ValueError, OSError):  # not privileged: as far as the hard limit goes
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_mosquitto(
    workdir: Path, *, host: str = "127.0.0.1", port: int | None = None, timeout: float = 15.0
) -> tuple[ManagedProcess, int]:
    """Start mosquitto with a generated config under ``workdir``; return it and its port."""
    if port is None:
        return retry_port_clash(
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
    wait_until(lambda: listens(proc.pid, port), proc, timeout, f"listening on {host}:{port}")
    return proc, port
