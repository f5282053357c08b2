"""How a supervised cluster went: each process's :class:`Exit`, and the :class:`ClusterSummary`."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import TypedDict

__all__ = ["ClusterSummary", "ClusterSummaryDict", "Exit", "describe_status"]


@dataclass(frozen=True, slots=True)
class Exit:
    """How one process of a generation ended."""

    index: int
    pid: int
    returncode: int
    after_s: float
    """Seconds from the start of its generation."""
    killed_by_us: bool = False

    def describe(self) -> str:
        """Return e.g. ``p1 (pid 42) killed by SIGKILL after 3.2 s``."""
        how = describe_status(self.returncode)
        who = " (by the supervisor)" if self.killed_by_us else ""
        return f"p{self.index} (pid {self.pid}) {how}{who} after {self.after_s:.1f} s"


def describe_status(returncode: int) -> str:
    """Return ``exited with code N`` or ``killed by SIGNAME`` for a Popen return code."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with code {returncode}"


class ClusterSummaryDict(TypedDict):
    """:meth:`ClusterSummary.as_dict`: the summary as JSON."""

    processes: int
    generations: int
    restarts: int
    wall_s: float
    up_s: float
    longest_generation_s: float
    reason: str
    exit_code: int
    deaths: list[str]


@dataclass
class ClusterSummary:
    """What happened while the supervisor ran."""

    processes: int
    generations: int = 0
    restarts: int = 0
    wall_s: float = 0.0
    """From the supervisor's start to its end."""
    up_s: float = 0.0
    """Sum of the generations' lifetimes (the cluster was running)."""
    longest_s: float = 0.0
    reason: str = ""
    """``stopped on request``, ``the flow ended``, or why the supervisor gave up."""
    exit_code: int = 0
    deaths: list[str] = field(default_factory=list)
    """One line per generation that died: the process whose exit broke the cluster."""

    def lines(self) -> list[str]:
        """Return the summary as progress lines."""
        out = [
            f"summary: {self.processes} process(es); ran {_duration(self.wall_s)}, cluster up"
            f" {_duration(self.up_s)}; {self.generations} generation(s), {self.restarts}"
            f" restart(s); longest generation {_duration(self.longest_s)}; {self.reason};"
            f" exit code {self.exit_code}"
        ]
        out.extend(f"death: {line}" for line in self.deaths)
        return out

    def as_dict(self) -> ClusterSummaryDict:
        """Return the summary as a JSON-ready dict."""
        return {
            "processes": self.processes,
            "generations": self.generations,
            "restarts": self.restarts,
            "wall_s": round(self.wall_s, 3),
            "up_s": round(self.up_s, 3),
            "longest_generation_s": round(self.longest_s, 3),
            "reason": self.reason,
            "exit_code": self.exit_code,
            "deaths": list(self.deaths),
        }


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
