"""``sensorgate simulate``: run a fleet of simulated devices."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from simulators.cli import _common as common


def run(args: argparse.Namespace) -> int:
    """Run the command; return its exit code."""
    from contract import TopicScheme
    from contract.durations import parse_time
    from contract.errors import BrokerError, ConfigError, TopicError
    from simulators.anomalies import RandomAnomalies, ScheduledAnomaly, parse_anomaly_spec
    from simulators.dialects import DialectPublisher
    from simulators.fleet import Fleet, FleetReport
    from simulators.labels import JsonLinesLabelSink, LabelSink, MqttLabelSink, labels_topic
    from simulators.links import LinkPool, Publisher
    from simulators.multiplexed import MultiplexedLinks
    from simulators.process import Usage
    from simulators.scenario import build_devices, builtin_scenarios, load_scenario, simple_scenario
    from simulators.timebase import Timebase, resolve_start

    if args.list_scenarios:
        for name, path in builtin_scenarios().items():
            scenario = load_scenario(path)
            print(f"{name:<14} {scenario.device_count:>6} devices  {scenario.description}")
        return common.EXIT_OK
    try:
        topics = TopicScheme(prefix=args.prefix)
        scheduled: list[ScheduledAnomaly] = []
        randoms: list[RandomAnomalies] = []
        for item in common.csv_list(args.anomalies or ""):
            spec = parse_anomaly_spec(item)
            if isinstance(spec, RandomAnomalies):
                randoms.append(spec)
            else:
                scheduled.append(spec)
        start = parse_time(args.start, now=datetime.now(UTC)) if args.start else None
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
        speed = scenario.speed_factor
        timebase = Timebase(
            start=resolve_start(scenario.start, speed, scenario.duration_s), speed=speed
        )
        devices = build_devices(scenario, topics, sequence_start=args.sequence_start)
    except (ConfigError, TopicError, ValueError) as exc:
        common.err(str(exc))
        return common.EXIT_CONFIG

    settings = common.settings(args)
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
    pool: LinkPool
    if per_device:
        # One selector thread serves them all: a paho thread per device does not scale.
        pool = MultiplexedLinks(
            settings,
            client_ids=[args.client_id.format(site=d.site, device=d.device) for d in devices],
            track_latency=True,
            bind_addresses=args.bind_addresses,
        )
    else:
        pool = LinkPool(settings, size=max(1, args.links), client_prefix=f"sg-sim-{scenario.name}")
    ramp0 = Usage.now()
    try:
        pool.start(timeout=args.ramp_timeout if per_device else 30.0)
    except BrokerError as exc:
        common.err(str(exc))
        if args.json and per_device:
            common.emit(
                args,
                "simulate",
                per_device_cli.threads_failure_doc(pool, scenario, exc, ramp0),
                [],
            )
        return common.EXIT_BROKER
    ramp = Usage.now().since(ramp0)
    if isinstance(pool, MultiplexedLinks) and pool.open_error:
        common.err(f"going on with {pool.reached:,} of {pool.size:,} devices: {pool.open_error}")
    publisher: Publisher = pool
    if dialect != "sensorgate":
        publisher = DialectPublisher(pool, dialect)
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
        publisher=publisher,
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
        f" {settings.url} under"
        f" {topics.prefix + '/' if dialect == 'sensorgate' else dialect + ' topics'}"
        f" ({pool.size} connection(s), speed"
        f" {scenario.speed}, event time from {timebase.start.isoformat()})",
        file=sys.stderr,
    )
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
    if isinstance(publisher, DialectPublisher) and publisher.dropped:
        common.err(
            f"{publisher.dropped:,} readings have no place in the {dialect} dialect and were"
            " not published (see simulators/dialects.py)"
        )
    doc = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "connections": pool.size,
        "all_acknowledged": drained,
        "dialect": dialect,
        **report.as_dict(),
    }
    if per_device:
        doc.update(
            per_device_cli.threads_doc(
                pool, ramp=ramp, steady=steady, connected_at_end=connected_at_end
            )
        )
    lag = report.lag
    common.emit(
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
        return common.EXIT_BROKER
    return common.EXIT_OK if report.kept_up and drained else common.EXIT_BEHIND
