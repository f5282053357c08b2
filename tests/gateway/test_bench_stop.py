"""``sensorgate bench-stop``'s pure parts: the in-flight bound, targets, summaries, CLI.

No gateway runs here: the figures are made up. Two small real processes check how the
gateway is started with SIGINT ignored and how a stop is awaited (no timing asserted).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from rich.console import Console

from contract.errors import ConfigError
from gateway.bench.peers import gateway_argv
from gateway.bench.stop_report import build_stop_table, stop_exit_code
from gateway.bench.stop_results import (
    MODES,
    StopReport,
    StopTrial,
    estimate_in_flight,
    problems,
    summarize_trials,
)
from gateway.bench.stop_waits import signal_and_wait
from gateway.bench.workload import Workload
from gateway.cli import build_parser, run_command

MIB = 1 << 20


def _bound(rate: float = 1_500.0) -> object:
    return estimate_in_flight(
        message_bytes=5_000.0,
        messages_per_s=rate,
        epoch_interval_s=1.0,
        inbox_max_bytes=32 * MIB,
        batch_max_messages=2_000,
        receive_maximum=20_000,
        socket_bytes=36 * MIB,
    )


def test_the_bound_is_inbox_plus_an_epoch_plus_the_read_buffer() -> None:
    b = estimate_in_flight(
        message_bytes=5_000.0,
        messages_per_s=1_500.4,
        epoch_interval_s=1.0,
        inbox_max_bytes=32 * MIB,
        batch_max_messages=2_000,
        receive_maximum=20_000,
        socket_bytes=36 * MIB,
    )
    # The inbox takes messages while it holds at most 32 MiB: one more crosses it.
    assert b.inbox_messages == 32 * MIB // 5_000 + 1 == 6_711
    # An epoch at the measured rate, plus the batch taken just before it closes.
    assert b.epoch_messages == 1_501 + 2_000
    assert b.read_buffer_messages == 53  # 256 KiB / 5,000 B, rounded up
    assert b.bound == 6_711 + 3_501 + 53
    assert b.socket_messages == 7_550  # 36 MiB / 5,000 B, rounded up
    assert b.bound_with_sockets == b.bound + 7_550
    doc = b.as_dict()
    assert doc["bound"] == b.bound
    assert doc["inputs"]["inbox_max_bytes"] == 32 * MIB


def test_a_bound_needs_a_message_size() -> None:
    with pytest.raises(ValueError, match="message_bytes"):
        estimate_in_flight(
            message_bytes=0,
            messages_per_s=1.0,
            epoch_interval_s=1.0,
            inbox_max_bytes=MIB,
            batch_max_messages=1,
            receive_maximum=1,
            socket_bytes=0,
        )


def _trial(mode: str, n: int = 1, **kw: object) -> StopTrial:
    t = StopTrial(n, mode, expected=1_000_000, messages=20_000, graceful=MODES[mode].graceful)
    t.stored_at_signal, t.first_stored = 300_000, 400_000
    t.exit_s, t.exit_code = (0.01, -9) if mode == "sigkill" else (1.5, 0)
    t.redelivered, t.duplicates = 9_000, 0
    t.second_written, t.stored = 600_000, 1_000_000
    t.drain_s, t.second_exit_s = 8.0, 0.8
    t.bound = _bound()  # type: ignore[assignment]
    for key, value in kw.items():
        setattr(t, key, value)
    return t


def test_clean_trials_meet_every_target() -> None:
    trials = [_trial(m, n) for n in (1, 2, 3) for m in ("sigterm", "sigint-ignored", "sigkill")]
    assert problems(trials) == []
    assert all(t.rewritten == 0 and t.lost == 0 for t in trials)


def test_every_missed_target_is_named() -> None:
    trials = [
        _trial("sigterm", exit_s=12.5),
        _trial("sigint-ignored", exit_s=None, forced=True, exit_code=-9),
        _trial("sigterm", 2, duplicates=99_950),
        _trial("sigterm", 3, exit_code=1),
        _trial("sigkill", redelivered=40_000),
        _trial("sigkill", 2, stored=999_000),
        _trial("sigkill", 3, error="the first gateway exited mid-burst"),
    ]
    assert problems(trials) == [
        "sigterm round 1: the gateway took 12.5 s to exit (target 10 s)",
        "sigint-ignored round 1: the gateway did not exit; it was killed",
        "sigterm round 2: the second gateway dropped 99,950 duplicate readings after a"
        " graceful stop (expected 0)",
        "sigterm round 3: the gateway exited with code 1",
        "sigkill round 1: 40,000 messages sent again, above the bound (10,264; 17,814 with"
        " socket buffers); the second gateway took 0 in all",
        "sigkill round 2: stored 999,000 of 1,000,000 readings (lost 1,000)",
        "sigkill round 3: the first gateway exited mid-burst",
    ]


def test_readings_stored_twice_are_what_the_second_stored_beyond_the_rest() -> None:
    t = _trial("sigkill", second_written=650_000, duplicates=100_000)
    assert t.rewritten == 50_000
    assert t.as_dict()["rewritten"] == 50_000
    assert t.processed_twice(50) == 3_000


def _report(trials: list[StopTrial]) -> StopReport:
    report = StopReport(
        started_at="2026-11-30T12:00:00Z",
        command="sensorgate bench-stop",
        workload=Workload().as_dict(),
        settings={"epoch_interval_s": 1.0},
        rounds=3,
        modes=["sigterm", "sigkill"],
        stop_at=0.3,
    )
    report.trials = trials
    report.summaries = summarize_trials(trials)
    report.problems = problems(trials)
    return report


def test_summaries_take_median_and_range_per_mode_and_the_table_shows_them() -> None:
    trials = [
        _trial("sigterm", 1, exit_s=1.0),
        _trial("sigkill", 1, redelivered=15_000),
        _trial("sigterm", 2, exit_s=3.0),
        _trial("sigkill", 2, redelivered=12_000),
        _trial("sigterm", 3, exit_s=2.0),
        _trial("sigkill", 3, redelivered=16_000),
    ]
    report = _report(trials)
    by_mode = {s.mode: s for s in report.summaries}
    assert list(by_mode) == ["sigterm", "sigkill"]
    assert by_mode["sigterm"].exit_s == (2.0, 1.0, 3.0)
    assert by_mode["sigkill"].redelivered == (15_000, 12_000, 16_000)
    assert by_mode["sigkill"].exit_codes == [-9, -9, -9]
    assert by_mode["sigkill"].complete_rounds == 3
    console = Console(record=True, width=300)
    console.print(build_stop_table(report))
    text = console.export_text()
    assert "2.00 (1.00-3.00)" in text
    assert "15,000 (12,000-16,000)" in text
    assert "10,264" in text
    assert stop_exit_code(report) == 0
    doc = json.loads(json.dumps(report.as_dict(), default=str))
    assert doc["trials"][1]["bound"]["bound_with_sockets"] == 17_814
    assert doc["summaries"][0]["exit_s"] == [2.0, 1.0, 3.0]


def test_a_missed_target_fails_the_run() -> None:
    assert stop_exit_code(_report([_trial("sigterm", duplicates=1)])) == 1


def test_the_gateway_can_be_started_with_sigint_ignored() -> None:
    # The wrapper execs the real command line: print the disposition it inherited.
    argv = gateway_argv(ignore_sigint=True)
    assert argv[-4:] == ["-m", "gateway.cli", "gateway", "run"]
    show = "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
    done = subprocess.run(
        [*argv[:3], "-c", show], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "True"
    assert gateway_argv() == [sys.executable, "-m", "gateway.cli", "gateway", "run"]


def test_signal_and_wait_reports_how_the_process_ended() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    seconds, code = signal_and_wait(child, signal.SIGTERM, 30.0)
    assert seconds is not None
    assert code == -signal.SIGTERM
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            " print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    assert stubborn.stdout is not None
    stubborn.stdout.readline()  # SIGTERM is ignored from here on
    seconds, code = signal_and_wait(stubborn, signal.SIGTERM, 0.2)
    stubborn.stdout.close()
    assert seconds is None  # killed after the limit
    assert code == -signal.SIGKILL


def test_bench_stop_has_help_and_defaults() -> None:
    args = build_parser().parse_args(["bench-stop"])
    assert args.modes == "sigterm,sigint-ignored,sigkill"
    assert (args.rounds, args.stop_at, args.recovery, args.json) == (3, 0.3, True, False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench-stop", "--help"])


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--modes", "sigterm,sighup"], "modes"),
        (["--stop-at", "1.5"], "stop_at"),
        (["--rounds", "0"], "rounds"),
    ],
)
def test_bench_stop_refuses_bad_options(
    argv: list[str], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(["bench-stop", *argv])
    with pytest.raises(ConfigError, match=field):
        args.func(args)
    assert run_command(args) == 2
    assert field in capsys.readouterr().err
