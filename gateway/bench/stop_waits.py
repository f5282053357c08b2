"""How ``sensorgate bench-stop`` signals a gateway and waits on it and on influxd.

A signal timed to the process's exit (on a pidfd), the socket buffers a connection may
hold, and the waits of a trial: until the gateway says it stored a share, until
influxd's or the gateway's count stops moving.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contract.errors import ServiceError
from gateway.bench import storage
from gateway.bench.influxd import Influxd
from gateway.bench.peers import RunningPeer, wait_until

__all__ = [
    "message_rate",
    "signal_and_wait",
    "socket_buffer_bytes",
    "until_quiet",
    "until_still",
    "until_stored",
]


def socket_buffer_bytes() -> int:
    """Return the most a TCP connection's socket buffers hold (``tcp_rmem`` + ``tcp_wmem``)."""
    total = 0
    for name in ("tcp_rmem", "tcp_wmem"):
        try:
            total += int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
        except (OSError, ValueError, IndexError):
            continue
    return total


def signal_and_wait(
    proc: subprocess.Popen[bytes], signum: int, limit_s: float
) -> tuple[float | None, int]:
    """Send ``signum``; return (seconds to exit or None if killed after ``limit_s``, status).

    Waits on a pidfd, so the exit is seen when it happens (not at the next poll).
    """
    pidfd: int | None
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    t0 = time.monotonic()
    os.kill(proc.pid, signum)
    try:
        if pidfd is not None:
            ready, _, _ = select.select([pidfd], [], [], limit_s)
            exited = bool(ready)
            seconds = time.monotonic() - t0
        else:
            try:
                proc.wait(limit_s)
                exited = True
            except subprocess.TimeoutExpired:
                exited = False
            seconds = time.monotonic() - t0
    finally:
        if pidfd is not None:
            os.close(pidfd)
    if not exited:
        proc.kill()
        return None, proc.wait()
    return seconds, proc.wait()


def until_stored(
    gateway: RunningPeer, target: int, timeout_s: float
) -> list[tuple[float, dict[str, Any]]]:
    """Scrape the gateway until it says it stored ``target`` readings; return the scrapes."""
    assert gateway.metrics_port is not None
    seen: list[tuple[float, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        if not gateway.proc.alive():
            raise ServiceError(f"the first gateway exited mid-burst:\n{gateway.proc.log_tail()}")
        scrape = storage.scrape(gateway.metrics_port)
        seen.append((time.monotonic(), scrape))
        if scrape.get("written:readings", 0) >= target:
            return seen
        if time.monotonic() > deadline:
            raise ServiceError(
                f"the first gateway stored {scrape.get('written:readings', 0):,.0f} of the"
                f" {target:,} readings to wait for within {timeout_s:.0f} s"
            )
        time.sleep(0.1)


def message_rate(seen: list[tuple[float, dict[str, Any]]], window_s: float = 5.0) -> float:
    """Messages/s the gateway took in over the last ``window_s`` before the signal."""
    key = "sensorgate_messages_in_total"
    t1, last = seen[-1][0], seen[-1][1].get(key, 0.0)
    earlier = [(t, s.get(key, 0.0)) for t, s in seen if t1 - t <= window_s and s.get(key)]
    if not earlier or t1 <= earlier[0][0]:
        return 0.0
    t0, first = earlier[0]
    return float(last - first) / (t1 - t0)


def until_still(influxd: Influxd, still_s: float, timeout_s: float = 30.0) -> None:
    """Wait until influxd's point count has been still for ``still_s``."""
    count = influxd.write_stats().point_req
    _until_steady(lambda: influxd.write_stats().point_req, count, still_s, timeout_s, 0.2)


def until_quiet(port: int, still_s: float, timeout_s: float = 60.0) -> None:
    """Wait until the gateway's message count has been still for ``still_s``."""
    _until_steady(
        lambda: storage.scrape(port).get("sensorgate_messages_in_total", 0.0),
        None,
        still_s,
        timeout_s,
        0.25,
    )


def _until_steady(
    read: Callable[[], float],
    last: float | None,
    still_s: float,
    timeout_s: float,
    interval_s: float,
) -> None:
    """Poll ``read`` until it returned the same figure for ``still_s`` (from ``last``)."""
    since = time.monotonic()

    def still() -> bool:
        nonlocal last, since
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        return time.monotonic() - since >= still_s

    wait_until(still, timeout_s, interval_s)
