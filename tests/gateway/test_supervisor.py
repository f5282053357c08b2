"""The cluster supervisor on stand-in processes: restarts, backoff, stops, output."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.runtime.supervisor import ClusterSummary, RestartPolicy, Supervisor, describe_status
from tests.waiting import wait_for

# Stand-ins for gateway processes. "serve": runs until SIGTERM, then exits 0 (a gateway
# stopping gracefully). "deaf": ignores SIGTERM. "exit N": exits at once with code N.
_STAND_IN = """
import signal, sys, time
mode = sys.argv[1]
if mode == "exit":
    sys.exit(int(sys.argv[2]))
if mode == "serve":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
else:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("hello from a stand-in", flush=True)  # handlers set: ready for signals
while True:
    time.sleep(0.05)
"""


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", _STAND_IN, *args]


def _same(n: int, *args: str) -> Callable[[int], list[list[str]]]:
    return lambda _generation: [_cmd(*args) for _ in range(n)]


class _Running:
    """A supervisor running in a thread, with its progress lines."""

    def __init__(self, supervisor: Supervisor, lines: list[str], out: io.StringIO) -> None:
        self.supervisor = supervisor
        self.lines = lines
        self.out = out
        self.summary: ClusterSummary | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.summary = self.supervisor.run()

    def ready(self, generation: int, processes: int) -> bool:
        """Whether every process of ``generation`` said hello (its handlers are set)."""
        if not self.said(f"generation {generation}: started"):
            return False
        return self.out.getvalue().count("hello from a stand-in") >= generation * processes

    def said(self, needle: str) -> bool:
        return any(needle in line for line in list(self.lines))

    def join(self, timeout: float = 30.0) -> ClusterSummary:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the supervisor did not return"
        assert self.summary is not None
        return self.summary


@pytest.fixture
def supervise() -> Iterator[Callable[..., _Running]]:
    started: list[_Running] = []

    def start(commands: Callable[[int], list[list[str]]], **kwargs: object) -> _Running:
        lines: list[str] = []
        out = kwargs.setdefault("output", io.StringIO())
        assert isinstance(out, io.StringIO)
        supervisor = Supervisor(commands, progress=lines.append, **kwargs)  # type: ignore[arg-type]
        running = _Running(supervisor, lines, out)
        running.thread.start()
        started.append(running)
        return running

    yield start
    for running in started:  # never leave stand-ins behind, even when a test failed
        running.supervisor.request_stop()
        running.supervisor.request_stop()
        running.thread.join(30)


def test_one_death_restarts_every_process_and_a_stop_ends_them_gracefully(
    supervise: Callable[..., _Running],
) -> None:
    run = supervise(_same(3, "serve"), peer_exit_wait_s=0.5, policy=RestartPolicy(initial_s=0.1))
    wait_for(lambda: run.ready(1, 3), 30, "the first generation")
    first = run.supervisor.pids
    os.kill(first[1], signal.SIGKILL)
    wait_for(lambda: run.ready(2, 3), 30, "the restart")
    second = run.supervisor.pids
    assert len(second) == 3
    assert not set(first) & set(second)  # every process was started again, not just p1
    run.supervisor.request_stop()
    summary = run.join()
    assert (summary.generations, summary.restarts, summary.exit_code) == (2, 1, 0)
    assert summary.reason == "stopped on request"
    assert len(summary.deaths) == 1
    assert f"p1 (pid {first[1]}) killed by SIGKILL" in summary.deaths[0]
    # The stand-ins do not end when a peer dies (gateways do): the supervisor killed them.
    assert run.said(f"p0 (pid {first[0]}) killed by SIGKILL (by the supervisor)")
    assert run.said("stopping 3 process(es) (SIGTERM")
    for pid in first + second:
        wait_for(lambda pid=pid: not _alive(pid), 30, f"pid {pid} gone")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of another parent would still answer; ours are reaped by Popen.wait().
    return True


def test_quick_deaths_back_off_and_the_supervisor_gives_up_after_max_restarts(
    supervise: Callable[..., _Running],
) -> None:
    policy = RestartPolicy(initial_s=0.01, max_s=0.04, max_restarts=3)
    run = supervise(_same(2, "exit", "1"), policy=policy)
    summary = run.join()
    assert (summary.generations, summary.restarts, summary.exit_code) == (4, 3, 1)
    assert summary.reason.startswith("gave up after 3 restart(s)")
    assert len(summary.deaths) == 4
    assert sum("restarting all 2 process(es)" in line for line in run.lines) == 3


def test_backoff_doubles_up_to_its_ceiling() -> None:
    policy = RestartPolicy(initial_s=0.5, max_s=3.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    with pytest.raises(ValueError, match="initial <= max"):
        RestartPolicy(initial_s=2.0, max_s=1.0)


def test_a_generation_that_stayed_up_resets_the_backoff(
    supervise: Callable[..., _Running],
) -> None:
    # stable_s = 0: every generation counts as having stayed up, so every wait is the
    # first one; with a quick-death count the third wait would be 4x the first.
    policy = RestartPolicy(initial_s=0.01, max_s=10.0, stable_s=0.0, max_restarts=2)
    run = supervise(_same(1, "exit", "1"), policy=policy)
    run.join()
    assert run.supervisor.quick_deaths == 1


def test_a_refused_configuration_is_not_restarted(supervise: Callable[..., _Running]) -> None:
    summary = supervise(_same(2, "exit", "2")).join()
    assert (summary.generations, summary.restarts, summary.exit_code) == (1, 0, 2)
    assert "refused its configuration" in summary.reason


def test_processes_that_all_end_with_code_0_end_the_supervisor(
    supervise: Callable[..., _Running],
) -> None:
    summary = supervise(_same(2, "exit", "0")).join()
    assert (summary.generations, summary.exit_code) == (1, 0)
    assert summary.reason.startswith("the flow ended")


def test_a_stop_during_the_backoff_ends_at_once(supervise: Callable[..., _Running]) -> None:
    run = supervise(_same(2, "exit", "1"), policy=RestartPolicy(initial_s=600, max_s=600))
    wait_for(lambda: run.said("restarting all 2 process(es) in 600.0 s"), 30, "the backoff")
    run.supervisor.request_stop()
    summary = run.join(timeout=10)
    assert (summary.generations, summary.exit_code) == (1, 0)
    assert summary.reason == "stopped on request while the cluster was down"


def test_processes_deaf_to_sigterm_are_killed_after_the_stop_timeout(
    supervise: Callable[..., _Running],
) -> None:
    run = supervise(_same(2, "deaf"), stop_timeout_s=0.5)
    wait_for(lambda: run.ready(1, 2), 30, "the first generation")
    run.supervisor.request_stop()
    summary = run.join()
    assert summary.exit_code == 1
    assert run.said("still running 0.5 s after SIGTERM")
    assert run.said("not every process stopped cleanly")


def test_a_second_stop_request_kills_at_once(supervise: Callable[..., _Running]) -> None:
    run = supervise(_same(2, "deaf"), stop_timeout_s=600)
    wait_for(lambda: run.ready(1, 2), 30, "the first generation")
    run.supervisor.request_stop()
    wait_for(lambda: run.said("stopping 2 process(es)"), 30, "the graceful stop")
    run.supervisor.request_stop()
    summary = run.join(timeout=10)
    assert run.said("second stop request")
    assert summary.exit_code == 1


def test_output_is_prefixed_or_appended_to_a_log_per_process(
    supervise: Callable[..., _Running], tmp_path: Path
) -> None:
    out = io.StringIO()
    run = supervise(_same(2, "serve"), output=out)
    wait_for(lambda: out.getvalue().count("hello from a stand-in") == 2, 30, "the output")
    assert "p0| hello from a stand-in" in out.getvalue()
    assert "p1| hello from a stand-in" in out.getvalue()
    run.supervisor.request_stop()
    run.join()

    logged = supervise(_same(2, "serve"), log_dir=tmp_path)
    wait_for(lambda: (tmp_path / "p1.log").exists(), 30, "the log files")
    wait_for(lambda: "hello" in (tmp_path / "p1.log").read_text(), 30, "the logged output")
    logged.supervisor.request_stop()
    logged.join()
    text = (tmp_path / "p0.log").read_text()
    assert text.startswith("--- generation 1: ")
    assert "hello from a stand-in" in text


def test_exit_statuses_read_as_words() -> None:
    assert describe_status(-9) == "killed by SIGKILL"
    assert describe_status(-6) == "killed by SIGABRT"
    assert describe_status(1) == "exited with code 1"


def test_a_process_that_cannot_start_stops_the_ones_already_started(
    supervise: Callable[..., _Running], tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-program")
    run = supervise(lambda _g: [_cmd("serve"), [missing]], log_dir=tmp_path)
    summary = run.join()
    assert summary.exit_code == 1
    assert "cannot start process 1" in summary.reason
    assert summary.generations == 1
    assert summary.restarts == 0
    (started,) = run.supervisor.pids
    assert not _alive(started)  # killed and reaped, not left waiting for its peer
