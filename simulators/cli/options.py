"""The options of the simulator commands, one function per command or option group.

:func:`simulators.cli.register` adds the commands with these; each ``run`` in
:mod:`simulators.cli.simulate`, :mod:`~simulators.cli.csv_replay` and
:mod:`~simulators.cli.loadgen` reads what they define. Only the standard library (and
the dialect names) is imported, so registering costs the ``sensorgate`` CLI nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from simulators.cli._common import csv_list
from simulators.dialects import DIALECTS

__all__ = ["add_broker_options", "add_csv_replay", "add_loadgen", "add_simulate"]

if TYPE_CHECKING:  # subscriptable for the type checker only
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_broker_options(parser: argparse.ArgumentParser) -> None:
    """Add the broker group and the output options every simulator command shares."""
    group = parser.add_argument_group("broker")
    group.add_argument("--host", default="127.0.0.1", help="MQTT broker host (127.0.0.1)")
    group.add_argument("--port", type=int, default=1883, help="MQTT broker port (1883)")
    group.add_argument("--prefix", default="sg/v1", help="topic prefix (sg/v1)")
    group.add_argument(
        "--username",
        default=None,
        help="MQTT user name (simulate --connections per-device: may name each device with"
        " {site} and {device})",
    )
    group.add_argument("--password", default=None, help="MQTT password")
    group.add_argument("--qos", type=int, choices=(0, 1, 2), default=1, help="publish QoS (1)")
    group.add_argument("--keepalive", type=int, default=30, metavar="S", help="MQTT keepalive (30)")
    group.add_argument("--tls-ca", type=Path, default=None, metavar="FILE", help="TLS: CA file")
    group.add_argument(
        "--tls-cert", type=Path, default=None, metavar="FILE", help="TLS: client certificate"
    )
    group.add_argument("--tls-key", type=Path, default=None, metavar="FILE", help="TLS: its key")
    group.add_argument(
        "--tls-insecure",
        action="store_true",
        help="TLS without checking the broker's certificate (tests only)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--progress-every",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between progress lines on stderr (5; 0 for none)",
    )


def add_simulate(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``simulate`` and its options; return its parser."""
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
        help="event time of the start: ISO 8601 (without a zone: UTC), now or 2h (ago)"
        " (default: see docs)",
    )
    sim.add_argument("--seed", type=int, default=None, help="random seed (0)")
    sim.add_argument("--anomalies", default=None, help="comma-separated anomaly specs")
    sim.add_argument("--labels", type=Path, default=None, help="append labels to this JSONL file")
    sim.add_argument(
        "--publish-labels",
        action="store_true",
        help="also publish labels on {prefix}/_sim/labels (QoS 1)",
    )
    _add_connection_options(sim)
    _add_publish_options(sim)
    add_broker_options(sim)
    return sim


def _add_connection_options(sim: argparse.ArgumentParser) -> None:
    """Add shared or per-device connections, and the per-device group."""
    sim.add_argument(
        "--connections",
        choices=("shared", "per-device"),
        default=None,
        help="shared connections, or one connection per device (default: the scenario's"
        " 'connections', else shared)",
    )
    sim.add_argument("--links", type=int, default=1, help="number of shared connections (1)")
    _add_per_device_options(sim)


def _add_publish_options(sim: argparse.ArgumentParser) -> None:
    """Add the sequence numbers, the drain at the end and the dialect of ``simulate``."""
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
    sim.add_argument(
        "--dialect",
        choices=DIALECTS,
        default="sensorgate",
        help="publish as SensorGate's edge agent (default) or as that family's devices would"
        " (shelly: Gen2 RPC, shelly1: Gen1 per-value topics, homeassistant: MQTT discovery"
        " then JSON states; for the gateway's adapters; see docs/adapters.md)",
    )


def _add_per_device_options(sim: argparse.ArgumentParser) -> None:
    """Add the group of ``--connections per-device``: ramp, then faults."""
    fleet = sim.add_argument_group(
        "one connection per device",
        "Each device connects with its own client id, publishes a retained birth on its"
        " status topic and leaves a last will there. See docs/simulators.md.",
    )
    fleet.add_argument(
        "--runner",
        choices=("asyncio", "threads"),
        default="asyncio",
        help="asyncio: aiomqtt, one event loop (default); threads: paho clients served by a"
        " selector thread (no birth or will; kept for comparison)",
    )
    fleet.add_argument(
        "--client-id",
        default="sim-{site}-{device}",
        metavar="TEMPLATE",
        help="client id of each device (sim-{site}-{device})",
    )
    fleet.add_argument(
        "--ramp-rate", type=float, default=500.0, metavar="N", help="new connections/s (500)"
    )
    fleet.add_argument(
        "--ramp-jitter",
        type=float,
        default=1.0,
        metavar="F",
        help="0..1: how randomly each device connects inside its slot (1)",
    )
    fleet.add_argument(
        "--ramp-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="start the schedule this long after the last slot even if some devices are"
        " still trying (60)",
    )
    fleet.add_argument(
        "--max-connecting",
        type=int,
        default=100,
        metavar="N",
        help="connection attempts in flight at once (100)",
    )
    _add_fault_options(fleet)


def _add_fault_options(fleet: argparse._ArgumentGroup) -> None:
    """Per-device queueing, dropped connections, bind addresses and keepalive checks."""
    fleet.add_argument(
        "--queue-size",
        type=int,
        default=100,
        metavar="N",
        help="events a device holds while it cannot send (100)",
    )
    fleet.add_argument(
        "--drop-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="kill this share of the connections abruptly (no DISCONNECT: the broker"
        " publishes their last wills)",
    )
    fleet.add_argument(
        "--drop-after",
        type=float,
        default=0.0,
        metavar="S",
        help="wall seconds after the schedule starts at which to kill them (0)",
    )
    fleet.add_argument(
        "--rejoin-after",
        type=float,
        default=None,
        metavar="S",
        help="the killed devices reconnect this long after (default: never)",
    )
    fleet.add_argument(
        "--bind-addresses",
        type=csv_list,
        default=[],
        metavar="LIST",
        help="local addresses to connect from, round robin (e.g. 127.0.0.1,127.0.0.2): one"
        " address gives about 14,000 connections to one broker port before connecting"
        " slows to a crawl (see docs/simulators.md)",
    )
    fleet.add_argument(
        "--housekeeping",
        type=float,
        default=None,
        metavar="S",
        help="seconds between keepalive checks per connection (default: a third of the"
        " keepalive; 1 is aiomqtt's own pace)",
    )


def add_csv_replay(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``csv-replay`` and its options; return its parser."""
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
    rep.add_argument("--exclude", type=csv_list, default=[], help="columns that are not metrics")
    rep.add_argument("--columns", type=csv_list, default=None, help="only these value columns")
    rep.add_argument(
        "--unit",
        action="append",
        default=[],
        metavar="METRIC=UNIT",
        help="unit of a metric (repeatable)",
    )
    rep.add_argument("--speed", default="realtime", help="realtime (default), xN, or max")
    rep.add_argument(
        "--rebase",
        default=None,
        metavar="START",
        help="shift every timestamp so the first row falls at START (ISO 8601, without a"
        " zone UTC; 'now'; or 2h for two hours ago), or with 'ends-now' the last row at now"
        " (a backfill the gateway accepts); default: the original timestamps",
    )
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
    add_broker_options(rep)
    return rep


def add_loadgen(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``loadgen`` and its options; return its parser."""
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
        "--device-prefix",
        default="load",
        help="device ids are PREFIX-000000, PREFIX-000001, ... (load)",
    )
    load.add_argument(
        "--sensors",
        type=int,
        default=0,
        help="reading j of a message comes from sensor s{j %% N} (0: one sensor, load)",
    )
    load.add_argument(
        "--first-sequence",
        type=int,
        default=None,
        metavar="N",
        help="the devices' first sequence (default: the wall clock in microseconds)",
    )
    load.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for acknowledgements at the end (30)",
    )
    add_broker_options(load)
    return load
