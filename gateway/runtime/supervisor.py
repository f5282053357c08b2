"""Supervise the processes of one Bytewax cluster: all run together or none does.

A Bytewax cluster is not elastic. When one process ends (a crash, a SIGKILL, an OOM
kill) the others lose a peer: their timely communication threads panic within about a
second and they exit with code 1. Nothing can join a running cluster either. So the unit
of restart is the whole cluster: a :class:`Supervisor` starts every process of a
*generation*, waits until one of them exits or a stop is requested, makes sure every
other one has ended too (they normally end on their own; a straggler is killed), and
starts the next generation after a backoff. The new generation resumes from the
recovery store, which only holds complete epochs, and the MQTT sessions re-deliver what
was not acknowledged.

The backoff doubles with every generation that died young (up ``stable_s``) and starts
over after one that stayed up longer. tenacity drives the loop (retry on a dead cluster,
stop on request or after ``max_restarts``, an interruptible sleep).

Errors: :class:`ClusterGaveUp` (a :class:`~contract.errors.SensorGateError`) when the
supervisor stops restarting; its ``exit_code`` is the one the command returns.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import tenacity

from contract.errors import ExitCode, SensorGateError
from gateway.runtime.child import Child
from gateway.runtime.outcome import ClusterSummary, Exit, describe_status

__all__ = [
    "ClusterGaveUp",
    "ClusterSummary",
    "Exit",
    "RestartPolicy",
    "Supervisor",
    "describe_status",
]

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
Commands = Callable[[int], Sequence[Sequence[str]]]
"""Generation number (1, 2, ...) -> the command line of every process of it."""

_POLL_S = 0.1
REFUSED_CONFIG = ExitCode.REFUSED
"""Exit code of a gateway process that refused its configuration: restarting won't help."""


class ClusterGaveUp(SensorGateError):
    """The supervisor stopped restarting the cluster (refused config, too many restarts)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When to start the next generation, and when to give up.

    The n-th consecutive generation that died within ``stable_s`` of its start waits
    ``min(max_s, initial_s * 2 ** (n - 1))``; one that stayed up longer resets n to 1.
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    stable_s: float = 60.0
    max_restarts: int | None = None
    """Restarts after which the supervisor gives up (None: never)."""

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_s < self.initial_s:
            raise ValueError(
                f"backoff needs 0 <= initial <= max; got {self.initial_s} and {self.max_s}"
            )
        if self.max_restarts is not None and self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0; got {self.max_restarts}")

    def delay(self, quick_deaths: int) -> float:
        """Return the wait before a restart after ``quick_deaths`` quick deaths in a row."""
        return float(min(self.max_s, self.initial_s * 2.0 ** max(0, quick_deaths - 1)))


class _Died(Exception):
    """A generation ended because one of its processes exited."""


class Supervisor:
    """Run the processes of one cluster; restart them all when one exits.

    ``commands(generation)`` returns every process's command line, so a generation may
    get fresh ports. ``run()`` blocks until a stop is requested
    (:meth:`request_stop`, safe from a signal handler), the processes all end by
    themselves with code 0 (the flow ended), or the supervisor gives up.
    """

    def __init__(
        self,
        commands: Commands,
        *,
        env: Mapping[str, str] | None = None,
        policy: RestartPolicy | None = None,
        stop_timeout_s: float = 60.0,
        peer_exit_wait_s: float = 10.0,
        log_dir: Path | None = None,
        progress: Progress = lambda _m: None,
        output: IO[str] | None = None,
    ) -> None:
        self._commands = commands
        self._env = env
        self.policy = policy or RestartPolicy()
        self.stop_timeout_s = stop_timeout_s
        self.peer_exit_wait_s = peer_exit_wait_s
        self._log_dir = log_dir
        self._progress = progress
        self._out = output or sys.stderr
        self._stop = threading.Event()
        self._kill = threading.Event()
        self._quick_deaths = 0
        self._children: list[Child] = []
        self.summary = ClusterSummary(processes=0)
        self._flow_ended = False
        self._down = False

    # Control (signal handlers) -----------------------------------------------------

    def request_stop(self) -> None:
        """Stop every process gracefully; a second request kills them."""
        if self._stop.is_set():
            self._kill.set()
        self._stop.set()

    def forward(self, signum: int) -> None:
        """Send ``signum`` to every running process (SIGHUP: reload the rules)."""
        for child in list(self._children):
            child.signal(signum)

    @property
    def quick_deaths(self) -> int:
        """Generations in a row that died within ``policy.stable_s`` (sets the backoff)."""
        return self._quick_deaths

    @property
    def pids(self) -> list[int]:
        """Process ids of the current generation."""
        return [c.pid for c in self._children]

    # The loop ----------------------------------------------------------------------

    def run(self) -> ClusterSummary:
        """Supervise until stopped; return the summary (``exit_code`` set)."""
        t0 = time.monotonic()
        policy = self.policy
        stop: tenacity.stop.stop_base = tenacity.stop_when_event_set(self._stop)
        if policy.max_restarts is not None:
            stop = stop | tenacity.stop_after_attempt(policy.max_restarts + 1)
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Died),
            stop=stop,
            wait=lambda _state: policy.delay(self._quick_deaths),
            sleep=self._sleep,
            before_sleep=self._announce_restart,
            reraise=True,
        )
        try:
            retrying(self._generation)
            if self._flow_ended:
                self.summary.reason = "the flow ended (every process exited with code 0)"
            elif self._down:
                self.summary.reason = "stopped on request while the cluster was down"
            else:
                self.summary.reason = "stopped on request"
        except _Died as died:
            limit = policy.max_restarts
            self.summary.reason = (
                f"gave up after {limit} restart(s): {died}"
                if not self._stop.is_set()
                else "stopped on request while the cluster was down"
            )
            self.summary.exit_code = 1 if not self._stop.is_set() else 0
        except ClusterGaveUp as exc:
            self.summary.reason = f"gave up: {exc}"
            self.summary.exit_code = exc.exit_code
        finally:
            self.summary.wall_s = time.monotonic() - t0
        return self.summary

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)  # a stop request ends the backoff at once

    def _announce_restart(self, state: tenacity.RetryCallState) -> None:
        delay = state.next_action.sleep if state.next_action else 0.0
        self._progress(
            f"restarting all {self.summary.processes} process(es) in {delay:.1f} s"
            " (they resume from the recovery store)"
        )

    def _generation(self) -> None:
        if self._stop.is_set():
            return
        self._down = False
        summary = self.summary
        summary.generations += 1
        generation = summary.generations
        if generation > 1:
            summary.restarts += 1
        started = self._start(generation)
        first = self._wait_first_exit()
        if first is None:  # stop requested
            exits = self._stop_gracefully(started)
            self._end(started, exits)
            # Killed by our SIGTERM: it came before the process set its handler, so
            # it had not started work; that is a clean stop too.
            bad = [e for e in exits if e.returncode not in (0, -signal.SIGTERM)]
            if bad:
                self.summary.exit_code = 1
                self._progress(
                    "not every process stopped cleanly: " + "; ".join(e.describe() for e in bad)
                )
            return
        exits = self._collect_after_death(first, started)
        uptime = self._end(started, exits)
        if all(e.returncode == 0 for e in exits):
            self._flow_ended = True
            self._progress(f"generation {generation}: every process exited with code 0")
            return
        self._died(generation, first, exits, uptime)

    def _start(self, generation: int) -> float:
        """Start every process of ``generation``; return when (monotonic)."""
        commands = [list(c) for c in self._commands(generation)]
        self.summary.processes = len(commands)
        started = time.monotonic()
        self._children = []
        try:
            for index, argv in enumerate(commands):
                self._children.append(
                    Child(index, argv, self._env, self._log_dir, self._out, generation)
                )
        except OSError as exc:
            for child in self._children:  # half a cluster would only wait for the rest
                child.signal(signal.SIGKILL)
                child.proc.wait()
            self._end(started, [])
            raise ClusterGaveUp(f"cannot start process {len(self._children)}: {exc}") from exc
        self._progress(
            f"generation {generation}: started "
            + ", ".join(f"p{c.index} pid {c.pid}" for c in self._children)
        )
        return started

    def _died(self, generation: int, first: int, exits: list[Exit], uptime: float) -> None:
        """Record a generation that died; raise to restart it, or to give up."""
        cause = next(e for e in exits if e.index == first)
        self.summary.deaths.append(f"generation {generation}: {cause.describe()}")
        self._progress(
            f"generation {generation}: {cause.describe()}; "
            + ("; ".join(e.describe() for e in exits if e.index != first) or "no other process")
        )
        if any(e.returncode == REFUSED_CONFIG for e in exits):
            raise ClusterGaveUp(
                "a process refused its configuration (exit code 2); fix it and start again",
                exit_code=REFUSED_CONFIG,
            )
        self._quick_deaths = self._quick_deaths + 1 if uptime < self.policy.stable_s else 1
        self._down = True
        raise _Died(cause.describe())

    def _end(self, started: float, exits: list[Exit]) -> float:
        uptime = time.monotonic() - started
        self.summary.up_s += uptime
        self.summary.longest_s = max(self.summary.longest_s, uptime)
        for child in self._children:
            child.close()
        return uptime

    def _wait_first_exit(self) -> int | None:
        while not self._stop.wait(_POLL_S):
            for child in self._children:
                if child.poll() is not None:
                    return child.index
        return None

    def _exit(self, child: Child, started: float, killed: bool) -> Exit:
        code = child.proc.wait()
        return Exit(child.index, child.pid, code, time.monotonic() - started, killed)

    def _collect_after_death(self, first: int, started: float) -> list[Exit]:
        """Wait for the others to end on their own (they lost a peer); kill stragglers."""
        exits = {first: self._exit(self._children[first], started, False)}
        deadline = time.monotonic() + self.peer_exit_wait_s
        while len(exits) < len(self._children) and time.monotonic() < deadline:
            for child in self._children:
                if child.index not in exits and child.poll() is not None:
                    exits[child.index] = self._exit(child, started, False)
            time.sleep(_POLL_S)
        for child in self._children:
            if child.index not in exits:
                child.signal(signal.SIGKILL)
                exits[child.index] = self._exit(child, started, True)
        return [exits[i] for i in sorted(exits)]

    def _stop_gracefully(self, started: float) -> list[Exit]:
        """SIGTERM every process (each ends its epoch and acknowledges); then SIGKILL."""
        self._progress(
            f"stopping {len(self._children)} process(es) (SIGTERM; each finishes its epoch)"
        )
        for child in self._children:
            child.signal(signal.SIGTERM)
        exits: dict[int, Exit] = {}
        deadline = time.monotonic() + self.stop_timeout_s
        while len(exits) < len(self._children):
            if self._kill.is_set() or time.monotonic() >= deadline:
                why = (
                    "second stop request"
                    if self._kill.is_set()
                    else (f"still running {self.stop_timeout_s:g} s after SIGTERM")
                )
                self._progress(f"killing the remaining process(es): {why}")
                for child in self._children:
                    if child.index not in exits:
                        child.signal(signal.SIGKILL)
                        exits[child.index] = self._exit(child, started, True)
                break
            for child in self._children:
                if child.index not in exits and child.poll() is not None:
                    exits[child.index] = self._exit(child, started, False)
            time.sleep(_POLL_S)
        return [exits[i] for i in sorted(exits)]
