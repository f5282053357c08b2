"""``sensorgate cluster``: N gateway processes as one Bytewax cluster, supervised.

Process ``i`` runs ``sensorgate gateway run -i i -a ADDRESSES -w W -r RECOVERY`` with the
supervisor's environment and config file, optionally behind an ``--exec-prefix`` (for
example ``ip netns exec sg-{i}``, ``taskset -c {i}`` or ``nsenter ...``: ``{i}`` is the
process id). When any process exits, the others stop and all are started again, after
a backoff, resuming from the recovery store (:mod:`gateway.runtime.supervisor`). Recovery is
required: without it a restart would lose the open windows and the dedupe and alarm
state. The supervisor creates the recovery partitions once, before the first
generation, so the processes never race to create them.

The number of MQTT partitions defaults to one per worker (``mqtt.partitions = "auto"``),
which every process resolves alike from ``-a`` and ``-w``. See docs/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import gateway
from contract.errors import ConfigError
from gateway.runtime.addresses import free_listen_ports, loopback_addresses, parse_addresses

if TYPE_CHECKING:
    from gateway.runtime.supervisor import RestartPolicy
    from gateway.settings import GatewaySettings

__all__ = [
    "ClusterSpec",
    "free_listen_ports",
    "loopback_addresses",
    "parse_addresses",
    "prepare_recovery",
    "register",
]

_PROJECT_ROOT = Path(gateway.__file__).resolve().parents[1]


def prepare_recovery(settings: GatewaySettings, path: Path, partitions: int) -> str:
    """Create ``partitions`` recovery partitions in ``path`` unless it already has some.

    The folder is prepared as every process will find it (0700, the partitions, the
    marker that ties it to ``stream.shards``: :func:`gateway.runtime.recovery.prepare_recovery`), so
    the processes only read it. Return what was done, for the progress line.
    """
    from gateway.runtime.recovery import prepare_recovery as prepare

    if partitions < 1:
        raise ConfigError("recovery_partitions", f"must be at least 1; got {partitions}")
    had = sorted(path.glob("part-*.sqlite3")) if path.is_dir() else []
    prepare(
        settings.model_copy(
            update={"recovery": True, "recovery_dir": path, "recovery_partitions": partitions}
        )
    )
    if had:
        return f"resuming from {len(had)} recovery partition(s) in {path}"
    return f"created {partitions} recovery partition(s) in {path}"


@dataclass(frozen=True)
class ClusterSpec:
    """The command lines of the cluster's processes."""

    processes: int
    workers: int
    recovery_dir: Path
    addresses: tuple[str, ...] | None = None
    """Fixed addresses; None: fresh loopback ports for every generation."""
    exec_prefix: tuple[str, ...] = ()
    """Tokens put before each process's command; ``{i}`` becomes the process id."""
    run_args: tuple[str, ...] = ()
    """More ``gateway run`` options (``--rules``, ``--metrics-port``)."""
    cli_args: tuple[str, ...] = ()
    """``sensorgate`` options before the command (``--log-level``, ``--log-json``)."""
    python: str = sys.executable

    def __post_init__(self) -> None:
        if self.processes < 1:
            raise ConfigError("processes", f"must be at least 1; got {self.processes}")
        if self.workers < 1:
            raise ConfigError("workers", f"must be at least 1; got {self.workers}")
        if self.addresses is not None and len(self.addresses) != self.processes:
            raise ConfigError(
                "addresses",
                f"{self.processes} process(es) need {self.processes} address(es);"
                f" got {len(self.addresses)}",
            )

    def command(self, index: int, addresses: Sequence[str]) -> list[str]:
        """Return the command line of process ``index``."""
        prefix = [token.replace("{i}", str(index)) for token in self.exec_prefix]
        return [
            *prefix,
            self.python,
            "-m",
            "gateway.cli",
            *self.cli_args,
            "gateway",
            "run",
            "-i",
            str(index),
            "-a",
            ";".join(addresses),
            "-w",
            str(self.workers),
            "-r",
            str(self.recovery_dir),
            *self.run_args,
        ]

    def commands(self, _generation: int = 1) -> list[list[str]]:
        """Return every process's command line (loopback ports picked afresh if not fixed)."""
        addresses = self.addresses or loopback_addresses(self.processes)
        return [self.command(i, addresses) for i in range(self.processes)]


def child_env(base: Mapping[str, str], config_file: str | None) -> dict[str, str]:
    """Return the processes' environment: the supervisor's, importing this same code tree."""
    from gateway.settings import CONFIG_ENV

    env = dict(base)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(_PROJECT_ROOT) + (os.pathsep + path if path else "")
    if config_file:
        # Absolute: an exec prefix may start the process in another directory.
        env[CONFIG_ENV] = str(Path(config_file).resolve())
    return env


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sensorgate cluster`` to the command line."""
    p = sub.add_parser(
        "cluster",
        help="run N gateway processes as one Bytewax cluster; restart them all when one dies",
        description="Start N `sensorgate gateway run` processes with the right -i/-a/-w, the"
        " same config file and environment, and a shared recovery directory (created once)."
        " A Bytewax cluster is not elastic: when any process exits or is killed, the others"
        " stop, and all are started again after a backoff, resuming from recovery."
        " SIGINT/SIGTERM stop every process gracefully (a second one kills them); SIGHUP is"
        " forwarded (rules reload). Prints progress lines and a summary (restarts, uptime)."
        " See docs/scaling.md.",
    )
    _shape_options(p.add_argument_group("cluster"))
    _process_options(p.add_argument_group("gateway processes"))
    _restart_options(p.add_argument_group("restarts"))
    p.add_argument("--json", action="store_true", help="print the summary as JSON at the end")
    p.set_defaults(func=_cmd_cluster)


def _shape_options(shape: argparse._ArgumentGroup) -> None:
    """Add the cluster's shape: processes, workers, addresses, recovery, exec prefix."""
    shape.add_argument(
        "-n", "--processes", type=int, default=None, help="processes (default: 1, or as many as -a)"
    )
    shape.add_argument("-w", "--workers", type=int, default=1, help="worker threads per process")
    shape.add_argument(
        "-a",
        "--addresses",
        default=None,
        metavar="H:P;H:P",
        help="the processes' cluster addresses, in process order (default: free loopback ports)",
    )
    shape.add_argument(
        "-r",
        "--recovery-dir",
        default=None,
        help="recovery directory, shared by the processes (default: recovery_dir, else"
        " $XDG_STATE_HOME/sensorgate/recovery/<gateway_id>; recovery must be on)",
    )
    shape.add_argument(
        "--recovery-partitions",
        type=int,
        default=None,
        metavar="N",
        help="partitions to create in a new recovery directory (default: recovery_partitions"
        " if set, else processes x workers)",
    )
    shape.add_argument(
        "--exec-prefix",
        default="",
        metavar="CMD",
        help="put CMD before each process's command; {i} is its id (e.g. \"ip netns exec"
        ' sg-{i}", "taskset -c {i}")',
    )


def _process_options(run: argparse._ArgumentGroup) -> None:
    """Add what every gateway process is given: rules, metrics port, log folder."""
    run.add_argument("--rules", default=None, metavar="FILE", help="alarm rules file")
    run.add_argument(
        "--metrics-port", type=int, default=None, help="process N serves /metrics on port+N"
    )
    run.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        help="append each process's output to DIR/pN.log (default: on stderr, prefixed pN|)",
    )


def _restart_options(restart: argparse._ArgumentGroup) -> None:
    """Add when to restart the cluster and when to give up."""
    restart.add_argument("--backoff", type=float, default=0.5, metavar="S", help="first wait")
    restart.add_argument(
        "--backoff-max", type=float, default=30.0, metavar="S", help="longest wait (30)"
    )
    restart.add_argument(
        "--stable-after",
        type=float,
        default=60.0,
        metavar="S",
        help="a generation up this long resets the backoff (60)",
    )
    restart.add_argument(
        "--max-restarts", type=int, default=None, metavar="N", help="give up after N (never)"
    )
    restart.add_argument(
        "--stop-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="SIGKILL processes still running this long after SIGTERM (60)",
    )


def _spec_from_args(args: argparse.Namespace, recovery_dir: Path) -> ClusterSpec:
    addresses = parse_addresses(args.addresses) if args.addresses else None
    processes = args.processes or (len(addresses) if addresses else 1)
    cli_args = ["--log-level", args.log_level] + (["--log-json"] if args.log_json else [])
    run_args: list[str] = []
    if args.rules:
        run_args += ["--rules", str(Path(args.rules).resolve())]
    if args.metrics_port is not None:
        run_args += ["--metrics-port", str(args.metrics_port)]
    try:
        prefix = tuple(shlex.split(args.exec_prefix))
    except ValueError as exc:
        raise ConfigError("exec_prefix", f"cannot split {args.exec_prefix!r}: {exc}") from None
    return ClusterSpec(
        processes=processes,
        workers=args.workers,
        recovery_dir=recovery_dir,
        addresses=addresses,
        exec_prefix=prefix,
        run_args=tuple(run_args),
        cli_args=tuple(cli_args),
    )


def _cmd_cluster(args: argparse.Namespace) -> int:
    from gateway.runtime.supervisor import Supervisor
    from gateway.settings import CONFIG_ENV, load_settings

    settings = load_settings()  # refuse a bad config before starting anything
    recovery = settings.recovery_path  # None: recovery is off
    if recovery is None:
        raise ConfigError(
            "recovery",
            "sensorgate cluster needs recovery (it is off): a restarted cluster resumes"
            " its windows, dedupe and alarm state from it",
        )
    recovery_dir = Path(args.recovery_dir or recovery).resolve()
    spec = _spec_from_args(args, recovery_dir)
    policy = _policy_from_args(args)
    partitions = args.recovery_partitions
    if partitions is None:
        explicit = "recovery_partitions" in settings.model_fields_set
        partitions = settings.recovery_partitions if explicit else spec.processes * spec.workers
    _progress(_shape_line(settings, spec))
    _progress(prepare_recovery(settings, recovery_dir, partitions))
    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(
        spec.commands,
        env=child_env(os.environ, os.environ.get(CONFIG_ENV)),
        policy=policy,
        stop_timeout_s=args.stop_timeout,
        log_dir=args.log_dir,
        progress=_progress,
    )

    def on_stop(signum: int, _frame: object) -> None:
        _progress(f"{signal.Signals(signum).name}: stopping the cluster")
        supervisor.request_stop()

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGHUP, lambda *_: supervisor.forward(signal.SIGHUP))
    summary = supervisor.run()
    for line in summary.lines():
        _progress(line)
    if args.json:
        print(json.dumps(summary.as_dict()), flush=True)
    return summary.exit_code


def _progress(message: str) -> None:
    print(f"cluster: {message}", flush=True)


def _policy_from_args(args: argparse.Namespace) -> RestartPolicy:
    """Return the restart policy of the ``restarts`` options, or raise ConfigError."""
    from gateway.runtime.supervisor import RestartPolicy

    try:
        return RestartPolicy(
            initial_s=args.backoff,
            max_s=args.backoff_max,
            stable_s=args.stable_after,
            max_restarts=args.max_restarts,
        )
    except ValueError as exc:
        raise ConfigError("backoff", str(exc)) from None


def _shape_line(settings: GatewaySettings, spec: ClusterSpec) -> str:
    """Describe the cluster about to start (processes, partitions, addresses)."""
    mqtt_parts = settings.mqtt.partition_count(spec.processes, spec.workers)
    return (
        f"{spec.processes} process(es) x {spec.workers} worker(s);"
        f" {mqtt_parts} MQTT partition(s) in share group {settings.mqtt.share_group!r};"
        f" addresses {';'.join(spec.addresses) if spec.addresses else 'loopback, free ports'}"
        + (f"; exec prefix {' '.join(spec.exec_prefix)!r}" if spec.exec_prefix else "")
    )
