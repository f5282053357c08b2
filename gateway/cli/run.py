"""``sensorgate gateway run`` (and ``gateway forget-sessions``): the gateway dataflow."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypedDict

__all__ = ["register"]


class _RunOverrides(TypedDict, total=False):
    """Settings the ``gateway run`` flags override (above variables and the file)."""

    recovery_dir: str
    metrics_port: int
    rules_file: str


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``gateway`` with ``run`` and ``forget-sessions``."""
    gateway = sub.add_parser("gateway", help="run the gateway dataflow")
    gsub = gateway.add_subparsers(dest="gateway_command", metavar="SUBCOMMAND", required=True)
    run = gsub.add_parser(
        "run",
        help="run the gateway flow (settings from SENSORGATE_* variables)",
        description="Run the Bytewax gateway flow. Settings come from SENSORGATE_*"
        " environment variables (see README). Stops cleanly on SIGINT/SIGTERM.",
    )
    run.add_argument("-w", "--workers", type=int, default=1, help="worker threads per process")
    run.add_argument("-i", "--process-id", type=int, default=None, help="this process's index")
    run.add_argument(
        "-a", "--addresses", default=None, help='cluster addresses "host:port;host:port"'
    )
    run.add_argument(
        "-r",
        "--recovery-dir",
        default=None,
        help="Bytewax recovery directory: windows and dedupe state survive a crash",
    )
    run.add_argument(
        "--rules",
        default=None,
        metavar="FILE",
        help="alarm rules (TOML, docs/alarms.md); default SENSORGATE_RULES_FILE, else the"
        " built-in defaults. Reloaded on SIGHUP or when the file changes",
    )
    run.add_argument(
        "--config",
        dest="run_config_file",
        type=Path,
        default=None,
        metavar="FILE",
        help="gateway config file (TOML; SENSORGATE_* variables override it; see"
        " `sensorgate config example`)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="port of /metrics and /healthz (process N uses port+N; 0 turns it off)",
    )
    run.set_defaults(func=_cmd_gateway_run)
    from gateway.ops import sessions

    sessions.register(gsub)


def size_polars_pool(workers: int) -> None:
    """Give polars one thread per Bytewax worker of this process (unless the user set one).

    A shard's columns are small (tens to thousands of rows per batch), and waking
    polars' thread pool for each expression costs more than it saves: parsing the times
    of a 400-reading batch took 0.18 ms on one thread against 0.52 ms on the default
    pool of one per core (end to end the gain was within the noise; docs/benchmarks.md,
    2026-12-01). One per worker keeps workers from queueing behind each other. Polars
    sizes its pool when first imported: call this before anything imports it.
    """
    import os

    os.environ.setdefault("POLARS_MAX_THREADS", str(max(1, workers)))


def _cmd_gateway_run(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    size_polars_pool(args.workers)

    import polars

    from gateway.app import GatewayApp, run_gateway
    from gateway.settings import load_settings

    overrides: _RunOverrides = {}
    if args.recovery_dir is not None:
        overrides["recovery_dir"] = args.recovery_dir
    if args.metrics_port is not None:
        overrides["metrics_port"] = args.metrics_port
    if args.rules is not None:
        overrides["rules_file"] = args.rules
    settings = load_settings(**overrides)
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logging.getLogger("gateway").info("signal %d: stopping after the current epoch", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    def hook_reload(app: GatewayApp) -> None:
        # The handler only sets a flag: the device steps reload at their next batch.
        signal.signal(signal.SIGHUP, lambda *_: app.rules.request_reload())

    addresses = args.addresses.split(";") if args.addresses else None
    logging.getLogger("gateway").info(
        "gateway %s: MQTT %s, InfluxDB %s (%s API), %d worker(s), %d polars thread(s)",
        settings.gateway_id,
        settings.mqtt.url,
        settings.influx.url,
        settings.influx.api,
        args.workers,
        polars.thread_pool_size(),
    )
    run_gateway(
        settings,
        workers=args.workers,
        process_id=args.process_id,
        addresses=addresses,
        stop=stop,
        on_built=hook_reload,
    )
    return 0
