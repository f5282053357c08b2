"""The simulator's own process: its file-descriptor limit, CPU and memory figures.

One connection per device costs one file descriptor per device, and the usual soft
limit (1,024) stops a fleet long before the broker does. :func:`raise_fd_limit` lifts
the soft limit to the hard one, and, where the process may (root, or
``CAP_SYS_RESOURCE``), the hard one too, up to the kernel's ``fs.nr_open``.
Elsewhere raise the hard limit outside the process: ``ulimit -Hn`` in the shell,
``nofile`` in ``/etc/security/limits.conf``, or ``LimitNOFILE=`` for a systemd unit.

:class:`Usage` is a snapshot of wall and process CPU time; the difference of two is
the CPU share of a phase (CPU seconds of every thread / wall seconds).
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Usage", "fd_limit", "peak_rss_bytes", "raise_fd_limit"]

_NR_OPEN = Path("/proc/sys/fs/nr_open")


def fd_limit() -> tuple[int, int]:
    """Return the (soft, hard) limit on open file descriptors."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _nr_open() -> int:
    try:
        return int(_NR_OPEN.read_text())
    except (OSError, ValueError):
        return 1_048_576


def raise_fd_limit(wanted: int | None = None) -> int:
    """Raise the open-file limit as far as allowed, at least to ``wanted`` if possible.

    Returns the soft limit now in force; the caller compares it with what it needs
    and says so (this function never raises for a limit it could not lift).
    """
    soft, hard = fd_limit()
    if wanted is not None and wanted > hard:
        # Only a privileged process may lift the hard limit; others keep theirs.
        target = min(wanted, _nr_open())
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            return target
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return fd_limit()[0]


def peak_rss_bytes() -> int:
    """Return the peak resident memory of this process so far (Linux: ``ru_maxrss``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass(frozen=True, slots=True)
class Usage:
    """Wall (monotonic), CPU and run-queue wait seconds (every thread) at one moment.

    The wait is the time the process's threads were ready to run but waited for a
    CPU (``/proc/self/task/*/schedstat``, Linux; 0 elsewhere): on a shared machine it
    tells a process that is slow from one that is starved.
    """

    wall_s: float
    cpu_s: float
    wait_s: float | None = None

    @classmethod
    def now(cls) -> Usage:
        """Take a snapshot."""
        return cls(time.monotonic(), time.process_time(), _run_queue_wait_s())

    def since(self, earlier: Usage) -> dict[str, float]:
        """Return wall, CPU and run-queue wait seconds and the cores used since ``earlier``.

        The wait is left out when either snapshot could not read it.
        """
        wall = self.wall_s - earlier.wall_s
        cpu = self.cpu_s - earlier.cpu_s
        out = {
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "cpu_share": round(cpu / wall, 4) if wall > 0 else 0.0,
        }
        if self.wait_s is not None and earlier.wait_s is not None:
            out["run_queue_wait_s"] = round(self.wait_s - earlier.wait_s, 3)
        return out


def _run_queue_wait_s() -> float | None:
    """Sum the run-queue wait of the live threads of this process (None if unreadable).

    Threads that ended take their wait with them: a lower bound when threads come and
    go. Reading needs a file descriptor each, so a process at its open-file limit (a
    fleet holding every connection it can) gets None.
    """
    total = 0
    try:
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/schedstat") as f:
                    total += int(f.read().split()[1])
            except FileNotFoundError:
                continue  # the thread ended meanwhile
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9
