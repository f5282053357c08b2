"""The simulator commands of ``sensorgate``: ``simulate``, ``csv-replay`` and ``loadgen``.

:func:`register` adds them to the ``sensorgate`` parser; :func:`main` runs them on
their own (``python -m simulators.cli simulate --help``). Each command prints a
progress line every few seconds on stderr and ends with a summary table on stdout, or
a JSON document with ``--json``. Exit codes: 0 done, 1 done but behind schedule or
not fully acknowledged, 2 refused configuration or input, 3 broker unreachable.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from simulators.cli import csv_replay, loadgen, options, simulate

__all__ = ["main", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``simulate``, ``csv-replay`` and ``loadgen`` to a ``sensorgate`` parser."""
    options.add_simulate(subparsers).set_defaults(func=simulate.run)
    options.add_csv_replay(subparsers).set_defaults(func=csv_replay.run)
    options.add_loadgen(subparsers).set_defaults(func=loadgen.run)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one simulator command; return its exit code."""
    parser = argparse.ArgumentParser(prog="sensorgate", description="SensorGate simulators")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code
