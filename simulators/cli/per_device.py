"""``sensorgate simulate --connections per-device``: one MQTT connection per device.

The asyncio runner (:class:`~simulators.aio_fleet.AsyncFleet`, the default) and the
figures the thread runner (``--runner threads``) adds to its report, in the same
shape, so that ``sensorgate bench-fleet`` can put them side by side.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from simulators.cli import _common as common

__all__ = ["raise_fd_limit_for", "run_async", "threads_doc", "threads_failure_doc"]

FD_MARGIN = 64
"""Descriptors a simulator needs besides its connections (files, pipes, epoll, ...)."""


def raise_fd_limit_for(devices: int) -> int:
    """Raise the open-file limit for ``devices`` connections; warn if it stays too low."""
    from simulators.process import fd_limit, raise_fd_limit

    limit = raise_fd_limit(devices + FD_MARGIN)
    if limit < devices + FD_MARGIN:
        hard = fd_limit()[1]
        common.err(
            f"the open-file limit is {limit:,} (hard limit {hard:,}; raising it needs root or"
            f" CAP_SYS_RESOURCE): at most about {max(0, limit - FD_MARGIN):,} of the"
            f" {devices:,} devices can connect. Raise it with `ulimit -Hn` as root,"
            " `nofile` in /etc/security/limits.conf, or LimitNOFILE= for a systemd unit."
        )
    return limit


def _plan(args: argparse.Namespace, seed: int) -> Any:
    from simulators.connections import ConnectionPlan

    username = args.username if args.username and "{" in args.username else None
    return ConnectionPlan(
        client_id_template=args.client_id,
        username_template=username,
        ramp_rate=args.ramp_rate,
        ramp_jitter=args.ramp_jitter,
        ramp_timeout_s=args.ramp_timeout,
        max_connecting=args.max_connecting,
        queue_size=args.queue_size,
        drop_fraction=args.drop_fraction,
        drop_after_s=args.drop_after,
        rejoin_after_s=args.rejoin_after,
        housekeeping_s=args.housekeeping,
        bind_addresses=tuple(args.bind_addresses),
        seed=seed,
    )


def _progress(report: Any) -> str:
    lag = report.lag
    puback = report.puback
    if report.phase == "ramp":
        return (
            f"[ramp {report.ramp_s:6.1f}s] connected {report.connected_now:,} of"
            f" {report.devices:,}  attempts {report.connect_attempts:,}"
            f"  failed {report.connect_failures:,}"
        )
    return (
        f"[{report.wall_s:7.1f}s] sim {report.duration_s:9.1f}s  connected"
        f" {report.connected_now:,}/{report.devices:,}  events {report.events:,}"
        f" ({report.events_per_s:,.0f}/s)  acked {report.acknowledged:,}"
        f"  PUBACK p99 {puback.percentile(0.99) * 1000:.0f} ms"
        f"  lag p99 {lag.percentile(0.99) * 1000:.0f} ms  late {lag.late:,}"
        f"  lost {report.connections_lost:,}  killed {report.killed:,}"
    )


def run_async(
    args: argparse.Namespace, *, scenario: Any, devices: list[Any], topics: Any, timebase: Any
) -> int:
    """Run the fleet on the asyncio runner; print the summary; return the exit code."""
    from simulators.labels import JsonLinesLabelSink, LabelSink

    sinks: list[LabelSink] = []
    if args.labels is not None:
        sinks.append(JsonLinesLabelSink(args.labels))
    try:
        fleet = _async_fleet(args, scenario, devices, topics, timebase, sinks)
        if isinstance(fleet, int):
            return fleet
        plan, settings = fleet.plan, fleet.settings
        print(
            f"simulating {len(devices):,} devices of scenario {scenario.name!r} on {settings.url},"
            f" one connection each (asyncio; ramp {plan.ramp_rate:g}/s, client ids"
            f" {plan.client_id_template!r}), under {topics.prefix}/ (speed {scenario.speed},"
            f" event time from {timebase.start.isoformat()})",
            file=sys.stderr,
        )
        report = common.run_interruptibly(fleet.run_blocking, fleet.stop)
    finally:
        for sink in sinks:
            sink.close()
    if report.error:
        common.err(report.error)
    doc = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "connections_mode": "per-device",
        "all_acknowledged": fleet.drained,
        "dialect": "sensorgate",
        **report.as_dict(),
    }
    common.emit(
        args, f"simulate: {scenario.name} (one connection per device, asyncio)", doc, _rows(report)
    )
    if report.error:
        return common.EXIT_BROKER
    return common.EXIT_OK if report.kept_up and fleet.drained else common.EXIT_BEHIND


def _async_fleet(
    args: argparse.Namespace,
    scenario: Any,
    devices: list[Any],
    topics: Any,
    timebase: Any,
    sinks: list[Any],
) -> Any:
    """Return the :class:`~simulators.aio_fleet.AsyncFleet` to run, or an exit code."""
    from pydantic import ValidationError

    from contract.errors import BrokerError
    from simulators.aio_fleet import AsyncFleet
    from simulators.aio_link import tls_context
    from simulators.labels import labels_topic

    try:
        plan = _plan(args, scenario.seed)
    except ValidationError as exc:
        common.err(f"refused per-device options: {exc.errors()[0]['msg']}")
        return common.EXIT_CONFIG
    settings = common.settings(args)
    try:
        tls = tls_context(settings.tls) if settings.tls is not None else None
    except BrokerError as exc:  # a TLS file that cannot be loaded: configuration, not the broker
        common.err(str(exc))
        return common.EXIT_CONFIG
    return AsyncFleet(
        devices,
        settings=settings,
        plan=plan,
        topics=topics,
        timebase=timebase,
        interval_s=scenario.interval_s,
        duration_s=scenario.duration_s,
        label_sinks=sinks,
        labels_topic=labels_topic(topics.prefix) if args.publish_labels else None,
        qos=args.qos,
        tls=tls,
        progress=_progress if args.progress_every > 0 else None,
        progress_every_s=args.progress_every or 5.0,
        drain_timeout_s=args.drain_timeout,
    )


def _rows(report: Any) -> list[tuple[str, Any]]:
    """Return the asyncio runner's summary table."""
    lag = report.lag
    puback = report.puback
    return [
        ("devices", report.devices),
        ("ramp-up (s)", report.ramp_s),
        ("connected after the ramp", report.connected_after_ramp),
        ("fewest connected", report.connected_min),
        ("connected at the end", report.connected_at_end),
        (
            "connection attempts / failed",
            f"{report.connect_attempts:,} / {report.connect_failures:,}",
        ),
        ("connections lost / reconnects", f"{report.connections_lost:,} / {report.reconnects:,}"),
        ("killed (--drop-fraction)", report.killed),
        ("births / goodbyes", f"{report.births:,} / {report.goodbyes:,}"),
        ("simulated (s)", report.duration_s),
        ("wall (s)", report.wall_s),
        ("events", report.events),
        ("readings", report.readings),
        ("acknowledged", report.acknowledged),
        ("shed (queue full) / discarded (killed)", f"{report.shed:,} / {report.discarded:,}"),
        ("stranded (device never connected)", report.stranded),
        ("target events/s", report.target_events_per_s),
        ("achieved events/s", report.events_per_s),
        ("silent ticks (dropout)", report.silent),
        ("labels", report.labels),
        ("PUBACK p50 (ms)", puback.percentile(0.5) * 1000),
        ("PUBACK p99 (ms)", puback.percentile(0.99) * 1000),
        ("lag p99 (ms)", lag.percentile(0.99) * 1000),
        (f"late (> {lag.tolerance_s:g} s)", lag.late),
        ("CPU during the schedule (cores)", report.steady.get("cpu_share")),
        ("peak RSS (MB)", report.peak_rss_bytes / 1e6),
        ("kept up", report.kept_up),
    ]


def _connections(
    pool: Any, *, after_ramp: int, at_end: int | None, ramp_s: float
) -> dict[str, Any]:
    return {
        "devices": pool.size,
        "ramp_s": round(ramp_s, 3),
        "after_ramp": after_ramp,
        "peak": pool.reached,
        "min_during_schedule": None,
        "at_end": at_end,
        "births": 0,
        "goodbyes": 0,
    }


def threads_doc(
    pool: Any, *, ramp: dict[str, float], steady: dict[str, float], connected_at_end: int
) -> dict[str, Any]:
    """Return the thread runner's connection, latency, CPU and memory figures."""
    from simulators.process import peak_rss_bytes

    latency = pool.latency
    connections = _connections(
        pool, after_ramp=pool.reached, at_end=connected_at_end, ramp_s=ramp["wall_s"]
    )
    connections.update(opened=pool.opened, open_error=pool.open_error)
    return {
        "runner": "threads",
        "connections": connections,
        "stranded": pool.stranded,
        "puback": latency.as_dict() if latency is not None else None,
        "steady": steady,
        "ramp_usage": ramp,
        "peak_rss_bytes": peak_rss_bytes(),
    }


def threads_failure_doc(pool: Any, scenario: Any, error: Exception, ramp0: Any) -> dict[str, Any]:
    """Return what the thread runner reached when it could not connect every device."""
    from simulators.process import Usage, peak_rss_bytes

    ramp = Usage.now().since(ramp0)
    return {
        "scenario": scenario.name,
        "runner": "threads",
        "devices": pool.size,
        "error": str(error),
        "connections": _connections(
            pool, after_ramp=pool.reached, at_end=None, ramp_s=ramp["wall_s"]
        ),
        "ramp_usage": ramp,
        "events": 0,
        "acknowledged": 0,
        "peak_rss_bytes": peak_rss_bytes(),
    }
