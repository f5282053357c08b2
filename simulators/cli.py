"""The simulator commands of ``sensorgate``: ``simulate``, ``csv-replay`` and ``loadgen``.

:func:`register` adds them to the ``sensorgate`` parser; :func:`main` runs them on
their own (``python -m simulators.cli simulate --help``). Each command prints a
progress line every few seconds on stderr and ends with a summary table on stdout, or
a JSON document with ``--json``. Exit codes: 0 done, 1 done but behind schedule or
not fully acknowledged, 2 refused configuration or input, 3 broker unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["main", "register"]

EXIT_OK = 0
EXIT_BEHIND = 1
EXIT_CONFIG = 2
EXIT_BROKER = 3


def _add_broker_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("broker")
    group.add_argument("--host", default="127.0.0.1", help="MQTT broker host (127.0.0.1)")
    group.add_argument("--port", type=int, default=1883, help="MQTT broker port (1883)")
    group.add_argument("--prefix", default="sg/v1", help="topic prefix (sg/v1)")
    group.add_argument("--username", default=None, help="MQTT user name")
    group.add_argument("--password", default=None, help="MQTT password")
    group.add_argument("--qos", type=int, choices=(0, 1, 2), default=1, help="publish QoS (1)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--progress-every",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between progress lines on stderr (5; 0 for none)",
    )


def _csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``simulate``, ``csv-replay`` and ``loadgen`` to a ``sensorgate`` parser."""
    sim = subparsers.add_parser(
        "simulate",
        help="run a fleet of simulated devices",
        description="Run many simulated devices from one process: signal models, anomalies"
        " with ground-truth labels, real-time, accelerated or as-fast-as-possible time.",
        epilog="Anomalies: KIND@START[+DURATION][:METRIC[:DEVICE]] schedules one (seconds"
        " after the start), KIND~RATE injects at random (per device per hour), all~RATE any"
        " kind. Kinds: spike, level_shift, drift, stuck, noise_burst, dropout, out_of_range."
        " Example: --anomalies stuck@600+300:temperature,spike~2",
    )
    sim.add_argument("--scenario", help="scenario TOML file, or a built-in name (demo, ...)")
    sim.add_argument("--list-scenarios", action="store_true", help="list built-in scenarios")
    sim.add_argument("--devices", type=int, default=10, help="number of devices (10)")
    sim.add_argument(
        "--metrics",
        default="temperature,humidity",
        help="comma-separated models: temperature, humidity, pressure, vibration, power,"
        " current, battery, door (temperature,humidity)",
    )
    sim.add_argument("--interval", type=float, default=None, help="seconds between readings (1)")
    sim.add_argument("--site", default="sim", help="site id (sim)")
    sim.add_argument(
        "--duration",
        type=float,
        default=None,
        help="simulated seconds to cover (default: until Ctrl-C)",
    )
    sim.add_argument(
        "--speed",
        default=None,
        help="realtime (default), xN accelerated, or max (synthetic event time)",
    )
    sim.add_argument(
        "--start",
        default=None,
        help="event time of the start, ISO 8601 with zone (default: see docs)",
    )
    sim.add_argument("--seed", type=int, default=None, help="random seed (0)")
    sim.add_argument("--anomalies", default=None, help="comma-separated anomaly specs")
    sim.add_argument("--labels", type=Path, default=None, help="append labels to this JSONL file")
    sim.add_argument(
        "--publish-labels",
        action="store_true",
        help="also publish labels on {prefix}/_sim/labels (QoS 1)",
    )
    sim.add_argument(
        "--connections",
        choices=("shared", "per-device"),
        default="shared",
        help="shared connections (default) or one connection per device",
    )
    sim.add_argument("--links", type=int, default=1, help="number of shared connections (1)")
    sim.add_argument(
        "--sequence-start",
        type=int,
        default=None,
        help="first sequence number (default: wall clock in microseconds)",
    )
    sim.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for acknowledgements at the end (30)",
    )
    _add_broker_options(sim)
    sim.set_defaults(func=_simulate)

    rep = subparsers.add_parser(
        "csv-replay",
        help="replay a CSV file as one device's readings",
        description="Replay a CSV file: each value column becomes a metric, each row an"
        " event keeping its timestamp as event time. Naive timestamps are read as UTC"
        " unless --tz names their zone. Unreadable rows are listed with line numbers; the"
        " replay is refused unless --skip-bad-rows.",
        epilog="SKAB: sensorgate csv-replay ../shared/datasets/skab/data/valve1/0.csv"
        " --exclude anomaly,changepoint --speed max",
    )
    rep.add_argument("file", type=Path, help="the CSV file")
    rep.add_argument("--site", default="csv", help="site id (csv)")
    rep.add_argument(
        "--device", default=None, help="device id (default: <folder>-<file stem>, e.g. valve1-0)"
    )
    rep.add_argument("--sensor", default="csv", help="sensor id (csv)")
    rep.add_argument("--delimiter", default=None, help="field delimiter (detected)")
    rep.add_argument("--time-column", default=None, help="timestamp column (detected)")
    rep.add_argument(
        "--time-format",
        default=None,
        help="iso, epoch_s, epoch_ms or a strptime pattern (detected)",
    )
    rep.add_argument("--tz", default=None, help="IANA zone of naive timestamps (UTC)")
    rep.add_argument("--exclude", type=_csv_list, default=[], help="columns that are not metrics")
    rep.add_argument("--columns", type=_csv_list, default=None, help="only these value columns")
    rep.add_argument(
        "--unit",
        action="append",
        default=[],
        metavar="METRIC=UNIT",
        help="unit of a metric (repeatable)",
    )
    rep.add_argument("--speed", default="realtime", help="realtime (default), xN, or max")
    rep.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="replay the readable rows and report the others",
    )
    rep.add_argument("--dry-run", action="store_true", help="read and check only; publish nothing")
    rep.add_argument(
        "--sequence-start",
        type=int,
        default=None,
        help="first sequence number (default: wall clock in microseconds)",
    )
    _add_broker_options(rep)
    rep.set_defaults(func=_csv_replay)

    load = subparsers.add_parser(
        "loadgen",
        help="publish a target rate of readings and report what the broker acknowledged",
        description="Generate load for benchmarks: a target readings/s in messages of"
        " --readings-per-message readings from --devices device identities.",
    )
    load.add_argument(
        "--rate",
        type=float,
        default=10_000.0,
        help="target readings per second (10000; 0 = as fast as possible)",
    )
    load.add_argument("--readings-per-message", type=int, default=50, help="(50)")
    load.add_argument("--devices", type=int, default=100, help="device identities (100)")
    load.add_argument(
        "--metrics", default="4", help="a count of metrics or a comma-separated list of ids (4)"
    )
    load.add_argument("--duration", type=float, default=10.0, help="seconds of publishing (10)")
    load.add_argument("--connections", type=int, default=1, help="MQTT connections (1)")
    load.add_argument("--site", default="load", help="site id (load)")
    load.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for acknowledgements at the end (30)",
    )
    _add_broker_options(load)
    load.set_defaults(func=_loadgen)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one simulator command; return its exit code."""
    parser = argparse.ArgumentParser(prog="sensorgate", description="SensorGate simulators")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


# -- helpers -------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Any:
    from edge.mqtt import MqttSettings

    return MqttSettings(
        host=args.host, port=args.port, username=args.username, password=args.password
    )


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    if value is None:
        return "-"
    return str(value)


def _table(title: str, rows: Sequence[tuple[str, Any]]) -> str:
    width = max(len(name) for name, _ in rows)
    values = [_fmt(v) for _, v in rows]
    vwidth = max(len(v) for v in values)
    line = "-" * (width + vwidth + 3)
    body = "\n".join(
        f"{name:<{width}}   {v:>{vwidth}}" for (name, _), v in zip(rows, values, strict=True)
    )
    return f"{title}\n{line}\n{body}\n{line}"


def _emit(
    args: argparse.Namespace, title: str, doc: dict[str, Any], rows: list[tuple[str, Any]]
) -> None:
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(_table(title, rows))


def _speed(text: str | None) -> float | None:
    from simulators.timebase import parse_speed

    return parse_speed(text) if text is not None else 1.0


def _run_interruptibly(target: Any, stop: Any) -> Any:
    """Run ``target()`` in a thread so that Ctrl-C stops it cleanly via ``stop()``."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = target()
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=run, name="sim-run", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping ...", file=sys.stderr)
        stop()
        thread.join(30)
    if "error" in result:
        raise result["error"]
    return result.get("value")


# -- simulate ------------------------------------------------------------------------


def _simulate(args: argparse.Namespace) -> int:
    from contract import TopicScheme
    from contract.errors import BrokerError, ConfigError, TopicError
    from simulators.anomalies import RandomAnomalies, ScheduledAnomaly, parse_anomaly_spec
    from simulators.fleet import Fleet, FleetReport
    from simulators.labels import JsonLinesLabelSink, LabelSink, MqttLabelSink, labels_topic
    from simulators.links import LinkPool, MultiplexedLinks
    from simulators.scenario import build_devices, builtin_scenarios, load_scenario, simple_scenario
    from simulators.timebase import Timebase, resolve_start

    if args.list_scenarios:
        for name, path in builtin_scenarios().items():
            scenario = load_scenario(path)
            print(f"{name:<14} {scenario.device_count:>6} devices  {scenario.description}")
        return EXIT_OK
    try:
        topics = TopicScheme(prefix=args.prefix)
        scheduled: list[ScheduledAnomaly] = []
        randoms: list[RandomAnomalies] = []
        for item in _csv_list(args.anomalies or ""):
            spec = parse_anomaly_spec(item)
            if isinstance(spec, RandomAnomalies):
                randoms.append(spec)
            else:
                scheduled.append(spec)
        start = datetime.fromisoformat(args.start) if args.start else None
        if args.scenario:
            scenario = load_scenario(args.scenario).override(
                seed=args.seed,
                interval_s=args.interval,
                duration_s=args.duration,
                speed=args.speed,
                start=start,
            )
            if scheduled or randoms:
                scenario = scenario.override(
                    anomalies=[*scenario.anomalies, *scheduled],
                    random_anomalies=[*scenario.random_anomalies, *randoms],
                )
        else:
            scenario = simple_scenario(
                devices=args.devices,
                metrics=tuple(_csv_list(args.metrics)),
                interval_s=args.interval or 1.0,
                site=args.site,
                seed=args.seed or 0,
                anomalies=tuple(scheduled),
                random_anomalies=tuple(randoms),
                duration_s=args.duration,
                speed=args.speed or "realtime",
                start=start,
            )
        speed = scenario.speed_factor
        timebase = Timebase(
            start=resolve_start(scenario.start, speed, scenario.duration_s), speed=speed
        )
        devices = build_devices(scenario, topics, sequence_start=args.sequence_start)
    except (ConfigError, TopicError, ValueError) as exc:
        _err(str(exc))
        return EXIT_CONFIG

    settings = _settings(args)
    pool: LinkPool
    if args.connections == "per-device":
        # One selector thread serves them all: a paho thread per device does not scale.
        pool = MultiplexedLinks(settings, client_ids=[f"sim-{d.site}-{d.device}" for d in devices])
    else:
        pool = LinkPool(settings, size=max(1, args.links), client_prefix=f"sg-sim-{scenario.name}")
    try:
        pool.start()
    except BrokerError as exc:
        _err(str(exc))
        return EXIT_BROKER
    sinks: list[LabelSink] = []
    if args.labels is not None:
        sinks.append(JsonLinesLabelSink(args.labels))
    if args.publish_labels:
        sinks.append(MqttLabelSink(pool, labels_topic(topics.prefix)))

    def show(report: FleetReport) -> None:
        lag = report.lag
        print(
            f"[{report.wall_s:7.1f}s] sim {report.duration_s:9.1f}s  events {report.events:,}"
            f" ({report.events_per_s:,.0f}/s)  readings {report.readings:,}"
            f"  acked {report.acknowledged:,}  labels {report.labels:,}"
            f"  lag p99 {lag.percentile(0.99) * 1000:.0f} ms max {lag.max * 1000:.0f} ms"
            f" late {lag.late:,}",
            file=sys.stderr,
        )

    fleet = Fleet(
        devices,
        publisher=pool,
        topics=topics,
        timebase=timebase,
        interval_s=scenario.interval_s,
        duration_s=scenario.duration_s,
        label_sinks=sinks,
        qos=args.qos,
        progress=show if args.progress_every > 0 else None,
        progress_every_s=args.progress_every or 5.0,
    )
    print(
        f"simulating {len(devices):,} devices of scenario {scenario.name!r} on"
        f" {settings.url} under {topics.prefix}/ ({pool.size} connection(s), speed"
        f" {scenario.speed}, event time from {timebase.start.isoformat()})",
        file=sys.stderr,
    )
    try:
        report = _run_interruptibly(fleet.run, fleet.stop)
        # QoS 0 too: its "acknowledged" means written to the socket, and a disconnect
        # before that would lose what paho still holds.
        drained = fleet.drain(args.drain_timeout)
    finally:
        pool.stop()
        for sink in sinks:
            sink.close()
    if report.error:
        _err(report.error)
    doc = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "connections": pool.size,
        "all_acknowledged": drained,
        **report.as_dict(),
    }
    lag = report.lag
    _emit(
        args,
        f"simulate: {scenario.name}",
        doc,
        [
            ("devices", report.devices),
            ("connections", pool.size),
            ("interval (s)", report.interval_s),
            ("speed", scenario.speed),
            ("simulated (s)", report.duration_s),
            ("wall (s)", report.wall_s),
            ("events", report.events),
            ("readings", report.readings),
            ("acknowledged", report.acknowledged),
            ("target events/s", report.target_events_per_s),
            ("achieved events/s", report.events_per_s),
            ("silent ticks (dropout)", report.silent),
            ("labels", report.labels),
            ("lag p50 (ms)", lag.percentile(0.5) * 1000),
            ("lag p99 (ms)", lag.percentile(0.99) * 1000),
            ("lag max (ms)", lag.max * 1000),
            (f"late (> {lag.tolerance_s:g} s)", lag.late),
            ("kept up", report.kept_up),
        ],
    )
    if report.error:
        return EXIT_BROKER
    return EXIT_OK if report.kept_up and drained else EXIT_BEHIND


# -- csv-replay ----------------------------------------------------------------------


def _csv_replay(args: argparse.Namespace) -> int:
    from contract import TopicScheme
    from contract.errors import BrokerError, ConfigError, TopicError
    from simulators.csv_replay import CsvRowsError, ReplayReport, read_csv, replay_csv
    from simulators.links import LinkPool

    try:
        topics = TopicScheme(prefix=args.prefix)
        speed = _speed(args.speed)
        units = dict(item.split("=", 1) for item in args.unit)
        table = read_csv(
            args.file,
            delimiter=args.delimiter,
            time_column=args.time_column,
            time_format=args.time_format,
            tz=args.tz,
            exclude=args.exclude,
            columns=args.columns,
        )
        device = args.device or f"{args.file.resolve().parent.name}-{args.file.stem}"
        topics.telemetry(args.site, device)
    except (ConfigError, TopicError, ValueError) as exc:
        _err(str(exc))
        return EXIT_CONFIG
    for err in table.errors:
        print(f"{args.file}: {err}", file=sys.stderr)
    if table.unknown_excluded:
        print(
            f"note: excluded columns not in the file: {', '.join(table.unknown_excluded)}",
            file=sys.stderr,
        )
    if table.errors and not args.skip_bad_rows and not args.dry_run:
        _err(
            f"{len(table.errors)} row(s) cannot be read; nothing published"
            " (use --skip-bad-rows to publish the rest)"
        )
        return EXIT_CONFIG
    info = [
        ("file", str(args.file)),
        ("delimiter", repr(table.delimiter)),
        ("time column", table.time_column),
        ("time format", table.time_format),
        ("naive times read in", table.timezone),
        ("metrics", ", ".join(table.metrics)),
        ("rows", len(table.rows)),
        ("bad rows", len(table.errors)),
        ("empty cells", table.empty_cells),
    ]
    if args.dry_run:
        doc = {
            "file": str(args.file),
            "delimiter": table.delimiter,
            "time_column": table.time_column,
            "time_format": table.time_format,
            "timezone": table.timezone,
            "metrics": list(table.metrics),
            "rows": len(table.rows),
            "empty_cells": table.empty_cells,
            "bad_row_lines": [{"line": e.line, "reason": e.reason} for e in table.errors],
        }
        _emit(args, "csv-replay (dry run)", doc, info)
        return EXIT_CONFIG if table.errors else EXIT_OK

    pool = LinkPool(_settings(args), size=1, client_prefix=f"sg-csv-{args.site}-{device}")
    try:
        pool.start()
    except BrokerError as exc:
        _err(str(exc))
        return EXIT_BROKER
    stop = threading.Event()

    def show(report: ReplayReport) -> None:
        print(
            f"[{report.wall_s:7.1f}s] rows {report.events:,}/{report.rows:,}"
            f"  readings {report.readings:,}  acked {report.acknowledged:,}",
            file=sys.stderr,
        )

    import time

    sequence_start = (
        args.sequence_start if args.sequence_start is not None else (time.time_ns() // 1000)
    )
    try:
        report = _run_interruptibly(
            lambda: replay_csv(
                table,
                pool,
                topics,
                site=args.site,
                device=device,
                sensor=args.sensor,
                speed=speed,
                units=units,
                qos=args.qos,
                skip_bad_rows=True,
                sequence_start=sequence_start,
                stop=stop,
                progress=show if args.progress_every > 0 else None,
                progress_every_s=args.progress_every or 5.0,
            ),
            stop.set,
        )
        drained = pool.wait_acknowledged(30.0)
        report.acknowledged = pool.acknowledged
    except CsvRowsError as exc:  # pragma: no cover - refused above already
        _err(str(exc))
        return EXIT_CONFIG
    finally:
        pool.stop()
    doc = {
        **report.as_dict(),
        "all_acknowledged": drained,
        "metrics": list(table.metrics),
        "time_format": table.time_format,
        "timezone": table.timezone,
    }
    _emit(
        args,
        "csv-replay",
        doc,
        [
            *info,
            ("site/device", f"{args.site}/{device}"),
            ("events", report.events),
            ("readings", report.readings),
            ("acknowledged", report.acknowledged),
            ("first time", report.first_time),
            ("last time", report.last_time),
            ("wall (s)", report.wall_s),
        ],
    )
    return EXIT_OK if drained and not report.stopped_early else EXIT_BEHIND


# -- loadgen -------------------------------------------------------------------------


def _loadgen(args: argparse.Namespace) -> int:
    from contract import TopicScheme
    from contract.errors import BrokerError, TopicError
    from simulators.loadgen import LoadgenReport, run_loadgen

    try:
        topics = TopicScheme(prefix=args.prefix)
        metrics: list[str] | int = (
            int(args.metrics) if args.metrics.isdigit() else _csv_list(args.metrics)
        )
    except (TopicError, ValueError) as exc:
        _err(str(exc))
        return EXIT_CONFIG

    def show(report: LoadgenReport) -> None:
        print(
            f"[{report.wall_s:7.1f}s] messages {report.messages:,}  readings"
            f" {report.readings:,} ({report.readings_per_s:,.0f}/s)"
            f"  acked {report.acknowledged:,}",
            file=sys.stderr,
        )

    try:
        report = run_loadgen(
            _settings(args),
            topics,
            rate=args.rate or None,
            readings_per_message=args.readings_per_message,
            devices=args.devices,
            metrics=metrics,
            duration_s=args.duration,
            qos=args.qos,
            connections=args.connections,
            site=args.site,
            drain_timeout_s=args.drain_timeout,
            progress=show if args.progress_every > 0 else None,
            progress_every_s=args.progress_every or 5.0,
        )
    except BrokerError as exc:
        _err(str(exc))
        return EXIT_BROKER
    except ValueError as exc:
        _err(str(exc))
        return EXIT_CONFIG
    _emit(
        args,
        "loadgen",
        report.as_dict(),
        [
            ("target readings/s", report.target_readings_per_s),
            ("readings/message", report.readings_per_message),
            ("devices", report.devices),
            ("connections", report.connections),
            ("qos", report.qos),
            ("publishing (s)", report.wall_s),
            ("messages", report.messages),
            ("readings", report.readings),
            ("achieved readings/s", report.readings_per_s),
            ("achieved messages/s", report.messages_per_s),
            ("acknowledged (PUBACK)", report.acknowledged),
            ("all acknowledged", report.all_acknowledged),
            ("ack wait (s)", report.ack_wait_s),
            ("acked readings/s", report.acked_readings_per_s),
            ("max backlog (s)", report.max_backlog_s),
            ("kept up", report.kept_up),
        ],
    )
    return EXIT_OK if report.kept_up and report.all_acknowledged else EXIT_BEHIND


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
