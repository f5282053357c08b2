"""The ``sensorgate`` command line.

Every command has ``--help``. Imports of heavy parts (Bytewax, InfluxDB) happen
inside the commands, so that ``sensorgate edge ...`` works on a device that only
installed the ``edge`` extra.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main", "run_command"]

# Commands owned by other packages. Each module provides
# register(subparsers); a package that is not installed simply has no command.
_PLUGINS = (
    "edge.cli",
    "simulators.cli",
    "gateway.cli.detection",
    "gateway.ops.acknowledge",
    "gateway.ops.replay",
    "gateway.bench.alarms",
    "gateway.bench.fleet_cli",
    "gateway.bench.adapters_cli",
    "gateway.cli.views",
    "gateway.cli.config",
    "gateway.influx.cli",
    "gateway.runtime.cluster",
    "gateway.bench.scaling_cli",
    "gateway.fuzz.cli",
    "gateway.chaos.cli",
)


# Third-party modules of the extras: an edge-only install lacks them, and a command
# that needs one says which extra to install instead of printing a traceback.
_EXTRA_OF = {
    "bytewax": "gateway",
    "influxdb_client": "gateway",
    "httpx": "gateway",
    "rich": "gateway",
    "tenacity": "gateway",
    "aiohttp": "gateway",
    "aiomqtt": "gateway",
    "prometheus_client": "gateway",
    "psutil": "gateway",
    "pydantic_settings": "gateway",
    "matplotlib": "bench",
}


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="sensorgate",
        description="SensorGate: IoT sensor streaming gateway (MQTT -> Bytewax -> InfluxDB).",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    parser.add_argument(
        "--config",
        dest="config_file",
        type=Path,
        default=None,
        metavar="FILE",
        help="gateway config file (TOML; SENSORGATE_* variables override it); default"
        " SENSORGATE_CONFIG_FILE",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = sub.add_parser(
        "up",
        help="run the whole local stack: services, gateway and a simulated fleet",
        description="Start mosquitto and influxd (unless SENSORGATE_MQTT__* and"
        " SENSORGATE_INFLUX__* point at external ones), the gateway and a small simulated"
        " fleet; print where everything is and live counts until Ctrl-C.",
    )
    up.add_argument("--devices", type=int, default=5, help="simulated devices (default 5)")
    up.add_argument("--interval", type=float, default=1.0, help="seconds between reports")
    up.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    up.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    up.add_argument(
        "--dashboard-port",
        type=int,
        default=8080,
        help="the dashboard's port (default 8080, or any free one when taken; 0: any free)",
    )
    up.set_defaults(func=_cmd_up)

    services = sub.add_parser(
        "services",
        help="run only mosquitto and influxd on free loopback ports until Ctrl-C",
        description="Start the local services with throwaway data and print their URLs.",
    )
    services.add_argument("--json", action="store_true", help="print the endpoints as JSON")
    services.set_defaults(func=_cmd_services)

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

    bench = sub.add_parser(
        "bench",
        help="the gateway side by side with Node-RED, a naive script and influxd's ceiling",
        description="Publish one fixed burst of telemetry (default: 1,000 devices, 50"
        " readings per QoS 1 message, 1 M readings) to each peer in turn, each against fresh"
        " mosquitto and influxd, rounds alternating between peers; report stored/expected,"
        " end-to-end readings/s, CPU per million readings (peer and influxd), peak RSS, the"
        " fraction of influxd's own ceiling and the ratio to Node-RED. Writes a JSON report"
        " and a PNG chart. See docs/benchmarks.md.",
    )
    _add_bench_arguments(bench)
    bench.set_defaults(func=_cmd_bench)

    bench_stop = sub.add_parser(
        "bench-stop",
        help="graceful stop (SIGTERM, SIGINT) and SIGKILL mid-burst: exit time, redelivery",
        description="On fresh mosquitto and influxd, per stop mode and round: run the"
        " gateway (default rules, a recovery directory) under the burst workload, send it"
        " the mode's signal once --stop-at of the readings are stored, time the signal to"
        " the process's exit, then drain the rest with a second gateway on the same"
        " settings (same client ids, share group and recovery directory) and report the"
        " messages the broker sent again, the duplicate readings dropped, the readings"
        " stored twice and the count stored, beside the in-flight bound estimated from the"
        " workload and settings. Median (min-max) over --rounds. Writes a JSON report."
        " Exit 1 if a trial failed or missed a target. See docs/benchmarks.md.",
    )
    _add_bench_stop_arguments(bench_stop)
    bench_stop.set_defaults(func=_cmd_bench_stop)

    for module_name in _PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:  # the module exists but is broken: say so
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    from gateway.observability.logs import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, json_logs=args.log_json)
    config = getattr(args, "run_config_file", None) or args.config_file
    if config is not None:
        # Every command (and every process it starts) reads its settings through
        # load_settings, which honours this variable.
        from gateway.settings import CONFIG_ENV

        os.environ[CONFIG_ENV] = str(config)
    return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command; map errors to exit codes with :func:`contract.errors.exit_code_for`.

    Shared by the plugins' own ``main`` so every entry point reports errors alike.
    """
    from contract.errors import ExitCode, SensorGateError, exit_code_for

    try:
        return int(args.func(args) or 0)
    except SensorGateError as exc:
        print(f"sensorgate: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt as exc:
        return exit_code_for(exc)
    except ModuleNotFoundError as exc:
        extra = _EXTRA_OF.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"sensorgate: the {args.command!r} command needs {exc.name}, which comes with the"
            f" {extra!r} extra: pip install 'sensorgate[{extra}]'",
            file=sys.stderr,
        )
        return ExitCode.REFUSED


def _cmd_up(args: argparse.Namespace) -> int:
    from gateway.localstack.up import run_up

    return run_up(
        devices=args.devices,
        interval_s=args.interval,
        duration_s=args.duration,
        as_json=args.json,
        dashboard_port=args.dashboard_port,
    )


_BENCH_PEERS = ("sensorgate", "sensorgate-storage", "nodered", "naive", "influxd")


def _add_bench_arguments(bench: argparse.ArgumentParser) -> None:
    workload = bench.add_argument_group("workload (defaults: the scenario's)")
    workload.add_argument(
        "--scenario",
        choices=["peer", "series100k", "burst5m"],
        default="peer",
        help="peer: 1,000 devices x 50 sensors, 1 M readings (default); series100k: 10,000"
        " devices x 10 series; burst5m: the peer workload with 5 M readings",
    )
    workload.add_argument("--devices", type=int, default=None, metavar="N", help="devices")
    workload.add_argument(
        "--readings-per-message", type=int, default=None, metavar="N", help="1 ms apart"
    )
    workload.add_argument(
        "--total", type=int, default=None, metavar="N", help="readings in the burst"
    )
    workload.add_argument(
        "--sensors-per-device",
        type=int,
        default=None,
        metavar="N",
        help="sensors s0..s(N-1) per device; metrics cycle over m0..m9",
    )
    workload.add_argument("--qos", type=int, choices=[0, 1], default=None, help="publish QoS")
    run = bench.add_argument_group("run")
    run.add_argument(
        "--peers",
        action="append",
        default=None,
        metavar="LIST",
        help=f"comma-separated peers to run, in order (default: all: {','.join(_BENCH_PEERS)})",
    )
    run.add_argument("--rounds", type=int, default=3, help="rounds over the peers (default 3)")
    run.add_argument(
        "--latency",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="for the sensorgate peers, p50/p99 arrival-to-stored in a paced phase at half"
        " the measured rate (default on)",
    )
    run.add_argument(
        "--latency-duration",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds of the paced latency phase (default 10)",
    )
    run.add_argument(
        "--idle",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds of idle-gateway CPU to measure after the rounds (0: skip; default 30)",
    )
    run.add_argument(
        "--settle",
        type=float,
        default=3.0,
        metavar="S",
        help="the burst is stored once influxd's write count is still this long (default 3)",
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="longest wait for one burst (default 120 s + 1 s per 2,000 readings)",
    )
    out = bench.add_argument_group("output")
    out.add_argument("--out", default="reports/bench.json", help="JSON report path")
    out.add_argument("--chart", default="reports/bench.png", help="PNG chart path ('' for none)")
    out.add_argument("--json", action="store_true", help="print the JSON report on stdout")


def _cmd_bench(args: argparse.Namespace) -> int:
    import os
    import shlex

    from contract.errors import ConfigError
    from gateway.bench.nodered import default_cache_dir
    from gateway.bench.report import run_and_report
    from gateway.bench.runner import BenchOptions, run_bench
    from gateway.bench.workload import SCENARIOS, with_overrides

    peers = [p.strip() for item in args.peers or [",".join(_BENCH_PEERS)] for p in item.split(",")]
    unknown = [p for p in peers if p not in _BENCH_PEERS]
    if unknown or not peers:
        raise ConfigError("peers", f"expected some of {', '.join(_BENCH_PEERS)}; got {unknown}")
    if args.rounds < 1:
        raise ConfigError("rounds", f"must be at least 1; got {args.rounds}")
    workload = with_overrides(
        SCENARIOS[args.scenario].workload,
        devices=args.devices,
        readings_per_message=args.readings_per_message,
        total=args.total,
        sensors_per_device=args.sensors_per_device,
        qos=args.qos,
    )
    options = BenchOptions(
        scenario=args.scenario,
        workload=workload,
        peers=tuple(dict.fromkeys(peers)),
        rounds=args.rounds,
        nodered_cache=default_cache_dir(os.environ),
        command=shlex.join(["sensorgate", *sys.argv[1:]]),
        latency=args.latency,
        latency_s=args.latency_duration,
        idle_s=args.idle,
        settle_s=args.settle,
        timeout_s=args.timeout,
    )
    return run_and_report(
        lambda progress: run_bench(options, progress),
        out=args.out,
        chart_path=args.chart or None,
        as_json=args.json,
    )


def _add_bench_stop_arguments(p: argparse.ArgumentParser) -> None:
    from gateway.bench.stop_results import DEFAULT_MODES, MODES

    workload = p.add_argument_group("workload (default: the bench's peer workload)")
    workload.add_argument("--devices", type=int, default=None, metavar="N", help="devices")
    workload.add_argument(
        "--readings-per-message", type=int, default=None, metavar="N", help="1 ms apart"
    )
    workload.add_argument(
        "--total", type=int, default=None, metavar="N", help="readings in the burst (1,000,000)"
    )
    workload.add_argument(
        "--sensors-per-device", type=int, default=None, metavar="N", help="sensors per device"
    )
    run = p.add_argument_group("run")
    run.add_argument(
        "--modes",
        default=",".join(DEFAULT_MODES),
        metavar="LIST",
        help=f"comma-separated stop modes, of {', '.join(MODES)}"
        f" (default {','.join(DEFAULT_MODES)})",
    )
    run.add_argument("--rounds", type=int, default=3, help="rounds over the modes (default 3)")
    run.add_argument(
        "--stop-at",
        type=float,
        default=0.3,
        metavar="SHARE",
        help="signal the first gateway once it stored this share of the readings (0.3)",
    )
    run.add_argument(
        "--storage-only",
        action="store_true",
        help="run the gateways with deploy/rules/none.toml instead of the default rules",
    )
    run.add_argument(
        "--recovery",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one recovery directory for both gateways (default on)",
    )
    run.add_argument(
        "--exit-limit",
        type=float,
        default=60.0,
        metavar="S",
        help="SIGKILL a gateway that has not exited this long after the signal (60)",
    )
    out = p.add_argument_group("output")
    out.add_argument("--out", default="reports/bench-stop.json", help="JSON report path")
    out.add_argument(
        "--keep-logs",
        default=None,
        metavar="DIR",
        help="copy each trial's logs (gateways, publisher, services) under DIR",
    )
    out.add_argument("--json", action="store_true", help="print the JSON report on stdout")


def _cmd_bench_stop(args: argparse.Namespace) -> int:
    import shlex
    from pathlib import Path

    from contract.errors import ConfigError
    from gateway.bench.stop import StopOptions, run_bench_stop
    from gateway.bench.stop_report import run_and_report_stop
    from gateway.bench.stop_results import MODES
    from gateway.bench.workload import SCENARIOS, with_overrides

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ConfigError("modes", f"expected some of {', '.join(MODES)}; got {args.modes!r}")
    if args.rounds < 1:
        raise ConfigError("rounds", f"must be at least 1; got {args.rounds}")
    if not 0 < args.stop_at < 1:
        raise ConfigError("stop_at", f"must be between 0 and 1; got {args.stop_at}")
    workload = with_overrides(
        SCENARIOS["peer"].workload,
        devices=args.devices,
        readings_per_message=args.readings_per_message,
        total=args.total,
        sensors_per_device=args.sensors_per_device,
    )
    options = StopOptions(
        workload=workload,
        modes=tuple(dict.fromkeys(modes)),
        rounds=args.rounds,
        stop_at=args.stop_at,
        storage_only=args.storage_only,
        recovery=args.recovery,
        exit_limit_s=args.exit_limit,
        keep_logs=Path(args.keep_logs) if args.keep_logs else None,
        command=shlex.join(["sensorgate", *sys.argv[1:]]),
    )
    return run_and_report_stop(
        lambda progress: run_bench_stop(options, progress), out=args.out, as_json=args.json
    )


def _cmd_services(args: argparse.Namespace) -> int:
    import json
    import signal
    import threading

    from gateway.localstack.services import LocalServices

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with LocalServices() as local:
        ep = local.endpoints
        if args.json:
            print(json.dumps({"mqtt_url": ep.mqtt_url, "influx_url": ep.influx_url}), flush=True)
        else:
            print(f"MQTT broker: {ep.mqtt_url}\nInfluxDB:    {ep.influx_url}\nCtrl-C to stop.")
            sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()
    return 0


def _cmd_gateway_run(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from gateway.app import GatewayApp, run_gateway
    from gateway.settings import load_settings

    overrides: dict[str, object] = {}
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
        "gateway %s: MQTT %s, InfluxDB %s (%s API), %d worker(s)",
        settings.gateway_id,
        settings.mqtt.url,
        settings.influx.url,
        settings.influx.api,
        args.workers,
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


if __name__ == "__main__":
    sys.exit(main())
