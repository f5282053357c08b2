"""The options and checks the benchmark commands share, defined once.

Each ``bench*`` command takes the same workload knobs (``--devices``,
``--readings-per-message``, ``--total``, ``--sensors-per-device``, ``--qos``), the same
run knobs (``--rounds``, ``--settle``, ``--timeout``, ``--storage-only``) and the same
outputs (``--out``, ``--chart``, ``--json``); only the defaults and what a round goes
over differ. Building a parser imports nothing heavy.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Collection, Sequence

from contract.errors import ConfigError

__all__ = [
    "add_chart",
    "add_json",
    "add_out",
    "add_rounds",
    "add_settle",
    "add_storage_only",
    "add_timeout",
    "add_workload",
    "choose",
    "command_line",
    "require_rounds",
]

Group = argparse.ArgumentParser | argparse._ArgumentGroup


def add_workload(group: Group, **help_of: str | None) -> None:
    """Add the workload options named in ``help_of`` (``readings_per_message=...``).

    Each takes a whole number (``--qos``: 0 or 1), defaults to None (the scenario's
    figure) and has the given help text.
    """
    for name, text in help_of.items():
        flag = "--" + name.replace("_", "-")
        if name == "qos":
            group.add_argument(flag, type=int, choices=[0, 1], default=None, help=text)
        else:
            group.add_argument(flag, type=int, default=None, metavar="N", help=text)


def add_rounds(group: Group, over: str, default: int = 3) -> None:
    """Add ``--rounds``: how many times to go over ``over`` (the peers, the modes...)."""
    group.add_argument(
        "--rounds", type=int, default=default, help=f"rounds over {over} (default {default})"
    )


def add_settle(group: Group) -> None:
    """Add ``--settle``: how long influxd's write count must stay still."""
    group.add_argument(
        "--settle",
        type=float,
        default=3.0,
        metavar="S",
        help="the burst is stored once influxd's write count is still this long (default 3)",
    )


def add_timeout(group: Group) -> None:
    """Add ``--timeout``: the longest wait for one burst."""
    group.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="longest wait for one burst (default 120 s + 1 s per 2,000 readings)",
    )


def add_storage_only(group: Group, who: str = "gateways") -> None:
    """Add ``--storage-only``: run without detection rules."""
    group.add_argument(
        "--storage-only",
        action="store_true",
        help=f"run the {who} with deploy/rules/none.toml instead of the default rules",
    )


def add_out(group: Group, default: str) -> None:
    """Add ``--out``: where the JSON report goes."""
    group.add_argument("--out", default=default, help="JSON report path")


def add_chart(group: Group, default: str) -> None:
    """Add ``--chart``: where the PNG chart goes ('' for none)."""
    group.add_argument("--chart", default=default, help="PNG chart path ('' for none)")


def add_json(group: Group) -> None:
    """Add ``--json``: the JSON report on stdout instead of the table."""
    group.add_argument("--json", action="store_true", help="print the JSON report on stdout")


def choose(option: str, raw: Sequence[str], known: Collection[str]) -> tuple[str, ...]:
    """Return the comma-separated names in ``raw``, first-seen order, each once.

    Raise :class:`ConfigError` when one is not in ``known`` or none is given.
    """
    names = [n.strip() for item in raw for n in item.split(",") if n.strip()]
    if not names or any(n not in known for n in names):
        given = ",".join(raw)
        raise ConfigError(option, f"expected some of {', '.join(known)}; got {given!r}")
    return tuple(dict.fromkeys(names))


def require_rounds(rounds: int) -> None:
    """Raise :class:`ConfigError` unless there is at least one round."""
    if rounds < 1:
        raise ConfigError("rounds", f"must be at least 1; got {rounds}")


def command_line() -> str:
    """Return the command as the user typed it, for the report."""
    return shlex.join(["sensorgate", *sys.argv[1:]])
