"""``sensorgate loadgen``: publish a target rate of readings and report the acknowledgements."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from simulators.cli import _common as common

if TYPE_CHECKING:
    from simulators.loadgen import LoadgenReport


def run(args: argparse.Namespace) -> int:
    """Run the command; return its exit code."""
    from contract import TopicScheme
    from contract.errors import BrokerError, TopicError
    from simulators.loadgen import LoadPlan, run_loadgen

    try:
        topics = TopicScheme(prefix=args.prefix)
        metrics: list[str] | int = (
            int(args.metrics) if args.metrics.isdigit() else common.csv_list(args.metrics)
        )
    except (TopicError, ValueError) as exc:
        common.err(str(exc))
        return common.EXIT_CONFIG

    try:
        plan = LoadPlan(
            rate=args.rate or None,
            readings_per_message=args.readings_per_message,
            devices=args.devices,
            metrics=metrics,
            duration_s=args.duration,
            qos=args.qos,
            connections=args.connections,
            site=args.site,
            device_prefix=args.device_prefix,
            sensors=args.sensors,
            first_sequence=args.first_sequence,
            drain_timeout_s=args.drain_timeout,
            progress_every_s=args.progress_every or 5.0,
        )
        report = run_loadgen(
            common.settings(args),
            topics,
            plan,
            progress=_show if args.progress_every > 0 else None,
        )
    except BrokerError as exc:
        common.err(str(exc))
        return common.EXIT_BROKER
    except ValueError as exc:
        common.err(str(exc))
        return common.EXIT_CONFIG
    common.emit(
        args,
        "loadgen",
        report.as_dict(),
        _summary(report),
    )
    return common.EXIT_OK if report.kept_up and report.all_acknowledged else common.EXIT_BEHIND


def _show(report: LoadgenReport) -> None:
    """Print one progress line on stderr."""
    print(
        f"[{report.wall_s:7.1f}s] messages {report.messages:,}  readings"
        f" {report.readings:,} ({report.readings_per_s:,.0f}/s)"
        f"  acked {report.acknowledged:,}",
        file=sys.stderr,
    )


def _summary(report: LoadgenReport) -> list[tuple[str, Any]]:
    """Return the rows of the summary table."""
    return [
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
    ]
