"""``sensorgate simulate``: run a fleet of simulated devices.

:func:`run` reads the scenario (a file or the options), then hands one connection per
device to :mod:`simulators.cli.per_device` or runs the fleet over shared connections
(or the thread runner's multiplexed ones) here.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from simulators.cli import _common as common

if TYPE_CHECKING:
    from contract import TopicScheme
    from simulators.anomalies import RandomAnomalies, ScheduledAnomaly
    from simulators.fleet import Fleet, FleetReport
    from simulators.labels import LabelSink
    from simulators.links import LinkPool, Publisher
    from simulators.scenario import Scenario
    from simulators.timebase import Timebase


def run(args: argparse.Namespace) -> int:
    """Run the command; return its exit code."""
    from contract import TopicScheme
    from contract.errors import ConfigError, TopicError
    from simulators.scenario import build_devices
    from simulators.timebase import Timebase, resolve_start

    if args.list_scenarios:
        _list_scenarios()
        return common.EXIT_OK
    try:
        topics = TopicScheme(prefix=args.prefix)
        scenario = _scenario(args)
        speed = scenario.speed_factor
        timebase = Timebase(
            start=resolve_start(scenario.start, speed, scenario.duration_s), speed=speed
        )
        devices = build_devices(scenario, topics, sequence_start=args.sequence_start)
    except (ConfigError, TopicError, ValueError) as exc:
        common.err(str(exc))
        return common.EXIT_CONFIG
    dialect = getattr(args, "dialect", "sensorgate")
    per_device = (args.connections or scenario.connections) == "per-device"
    if per_device:
        from simulators.cli import per_device as per_device_cli

        per_device_cli.raise_fd_limit_for(len(devices))
        if args.runner == "asyncio":
            if dialect != "sensorgate":
                common.err(
                    f"--dialect {dialect} needs --runner threads (the asyncio runner publishes"
                    " SensorGate's own events only)"
                )
                return common.EXIT_CONFIG
            return per_device_cli.run_async(
                args, scenario=scenario, devices=devices, topics=topics, timebase=timebase
            )
    return _run_on_links(
        args,
        scenario=scenario,
        devices=devices,
        topics=topics,
        timebase=timebase,
        per_device=per_device,
    )


def _list_scenarios() -> None:
    from simulators.scenario import builtin_scenarios, load_scenario

    for name, path in builtin_scenarios().items():
        scenario = load_scenario(path)
        print(f"{name:<14} {scenario.device_count:>6} devices  {scenario.description}")


def _anomalies(text: str | None) -> tuple[list[ScheduledAnomaly], list[RandomAnomalies]]:
    """Split ``--anomalies`` into scheduled and random ones."""
    from simulators.anomalies import RandomAnomalies, parse_anomaly_spec

    scheduled: list[ScheduledAnomaly] = []
    randoms: list[RandomAnomalies] = []
    for item in common.csv_list(text or ""):
        spec = parse_anomaly_spec(item)
        if isinstance(spec, RandomAnomalies):
            randoms.append(spec)
        else:
            scheduled.append(spec)
    return scheduled, randoms


def _scenario(args: argparse.Namespace) -> Scenario:
    """Load ``--scenario`` with the options over it, or build one from the options."""
    from contract.durations import parse_time
    from simulators.scenario import load_scenario, simple_scenario

    scheduled, randoms = _anomalies(args.anomalies)
    start = parse_time(args.start, now=datetime.now(UTC)) if args.start else None
    if not args.scenario:
        return simple_scenario(
            devices=args.devices,
            metrics=tuple(common.csv_list(args.metrics)),
            interval_s=args.interval or 1.0,
            site=args.site,
            seed=args.seed or 0,
            anomalies=tuple(scheduled),
            random_anomalies=tuple(randoms),
            duration_s=args.duration,
            speed=args.speed or "realtime",
            start=start,
        )
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
    return scenario


def _pool(
    args: argparse.Namespace,
    settings: Any,
    scenario: Scenario,
    devices: list[Any],
    *,
    per_device: bool,
) -> LinkPool:
    """Shared connections, or (thread runner) one per device multiplexed on one thread."""
    from simulators.links import LinkPool
    from simulators.multiplexed import MultiplexedLinks

    if per_device:
        # One selector thread serves them all: a paho thread per device does not scale.
        return MultiplexedLinks(
            settings,
            client_ids=[args.client_id.format(site=d.site, device=d.device) for d in devices],
            track_latency=True,
            bind_addresses=args.bind_addresses,
        )
    return LinkPool(settings, size=max(1, args.links), client_prefix=f"sg-sim-{scenario.name}")


def _label_sinks(args: argparse.Namespace, pool: LinkPool, topics: TopicScheme) -> list[LabelSink]:
    from simulators.labels import JsonLinesLabelSink, MqttLabelSink, labels_topic

    sinks: list[LabelSink] = []
    if args.labels is not None:
        sinks.append(JsonLinesLabelSink(args.labels))
    if args.publish_labels:
        sinks.append(MqttLabelSink(pool, labels_topic(topics.prefix)))
    return sinks


def _show(report: FleetReport) -> None:
    """Print one progress line on stderr."""
    lag = report.lag
    print(
        f"[{report.wall_s:7.1f}s] sim {report.duration_s:9.1f}s  events {report.events:,}"
        f" ({report.events_per_s:,.0f}/s)  readings {report.readings:,}"
        f"  acked {report.acknowledged:,}  labels {report.labels:,}"
        f"  lag p99 {lag.percentile(0.99) * 1000:.0f} ms max {lag.max * 1000:.0f} ms"
        f" late {lag.late:,}",
        file=sys.stderr,
    )


def _import_before_links() -> None:
    """Import now what is used after the links open.

    Past the open-file limit the thread runner keeps no descriptor free (its links
    retry for any that frees up), and an import needs one: the 20k bench case died in
    the import of simulators.labels once, with 19,988 links open.
    """
    import simulators.cli.per_device
    import simulators.fleet
    import simulators.labels  # noqa: F401


def _run_on_links(
    args: argparse.Namespace,
    *,
    scenario: Scenario,
    devices: list[Any],
    topics: TopicScheme,
    timebase: Timebase,
    per_device: bool,
) -> int:
    """Connect the pool, run the fleet over it, print the summary; return the exit code."""
    from simulators.dialects import DialectPublisher
    from simulators.process import Usage

    settings = common.settings(args)
    dialect = getattr(args, "dialect", "sensorgate")
    if per_device:
        _import_before_links()
    pool = _pool(args, settings, scenario, devices, per_device=per_device)
    ramp = _connect(args, pool, scenario, per_device=per_device)
    if ramp is None:
        return common.EXIT_BROKER
    from simulators.multiplexed import MultiplexedLinks

    if isinstance(pool, MultiplexedLinks) and pool.open_error:
        common.err(f"going on with {pool.reached:,} of {pool.size:,} devices: {pool.open_error}")
    publisher: Publisher = pool if dialect == "sensorgate" else DialectPublisher(pool, dialect)
    sinks = _label_sinks(args, pool, topics)
    fleet = _fleet(args, devices, publisher, topics, timebase, scenario, sinks)
    _announce(len(devices), scenario, settings.url, topics, dialect, pool.size, timebase)
    try:
        steady0 = Usage.now()
        report = common.run_interruptibly(fleet.run, fleet.stop)
        steady = Usage.now().since(steady0)
        connected_at_end = pool.connected
        # QoS 0 too: its "acknowledged" means written to the socket, and a disconnect
        # before that would lose what paho still holds.
        drained = fleet.drain(args.drain_timeout)
    finally:
        pool.stop()
        for sink in sinks:
            sink.close()
    if report.error:
        common.err(report.error)
    _warn_dropped(publisher, dialect)
    doc = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "connections": pool.size,
        "all_acknowledged": drained,
        "dialect": dialect,
        **report.as_dict(),
        **(_threads_doc(pool, ramp, steady, connected_at_end) if per_device else {}),
    }
    common.emit(args, f"simulate: {scenario.name}", doc, _summary(report, scenario, pool.size))
    if report.error:
        return common.EXIT_BROKER
    return common.EXIT_OK if report.kept_up and drained else common.EXIT_BEHIND


def _fleet(
    args: argparse.Namespace,
    devices: list[Any],
    publisher: Publisher,
    topics: TopicScheme,
    timebase: Timebase,
    scenario: Scenario,
    sinks: list[LabelSink],
) -> Fleet:
    """Build the fleet over the publisher."""
    from simulators.fleet import Fleet

    return Fleet(
        devices,
        publisher=publisher,
        topics=topics,
        timebase=timebase,
        interval_s=scenario.interval_s,
        duration_s=scenario.duration_s,
        label_sinks=sinks,
        qos=args.qos,
        progress=_show if args.progress_every > 0 else None,
        progress_every_s=args.progress_every or 5.0,
    )


def _warn_dropped(publisher: Publisher, dialect: str) -> None:
    """Say how many readings the dialect had no place for."""
    from simulators.dialects import DialectPublisher

    if isinstance(publisher, DialectPublisher) and publisher.dropped:
        common.err(
            f"{publisher.dropped:,} readings have no place in the {dialect} dialect and were"
            " not published (see simulators/dialects.py)"
        )


def _announce(
    devices: int,
    scenario: Scenario,
    url: str,
    topics: TopicScheme,
    dialect: str,
    connections: int,
    timebase: Timebase,
) -> None:
    """Say on stderr what is about to run."""
    print(
        f"simulating {devices:,} devices of scenario {scenario.name!r} on"
        f" {url} under"
        f" {topics.prefix + '/' if dialect == 'sensorgate' else dialect + ' topics'}"
        f" ({connections} connection(s), speed"
        f" {scenario.speed}, event time from {timebase.start.isoformat()})",
        file=sys.stderr,
    )


def _connect(
    args: argparse.Namespace, pool: LinkPool, scenario: Scenario, *, per_device: bool
) -> dict[str, float] | None:
    """Start the pool; return its ramp figures, or None (reported) if the broker refused."""
    from contract.errors import BrokerError
    from simulators.process import Usage

    ramp0 = Usage.now()
    try:
        pool.start(timeout=args.ramp_timeout if per_device else 30.0)
    except BrokerError as exc:
        common.err(str(exc))
        if args.json and per_device:
            from simulators.cli import per_device as per_device_cli

            failure = per_device_cli.threads_failure_doc(pool, scenario, exc, ramp0)
            common.emit(args, "simulate", failure, [])
        return None
    return Usage.now().since(ramp0)


def _threads_doc(
    pool: LinkPool, ramp: dict[str, float], steady: dict[str, float], connected_at_end: int
) -> dict[str, Any]:
    """Return the thread runner's figures (one connection per device)."""
    from simulators.cli import per_device as per_device_cli

    return per_device_cli.threads_doc(
        pool, ramp=ramp, steady=steady, connected_at_end=connected_at_end
    )


def _summary(report: FleetReport, scenario: Scenario, connections: int) -> list[tuple[str, Any]]:
    """Return the rows of the summary table."""
    lag = report.lag
    return [
        ("devices", report.devices),
        ("connections", connections),
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
    ]
