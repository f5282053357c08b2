"""``sensorgate influx setup``: make the gateway's database, retention policies, bucket, DBRP.

Reads the gateway's settings (``--config FILE``, ``SENSORGATE_INFLUX__*``) and runs
:func:`gateway.influx.setup.setup_influx`. Exit 0 when InfluxDB is ready for the
gateway, 1 when a step failed or was refused, 2 for refused settings.
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``influx setup`` to a ``sensorgate`` parser."""
    influx = subparsers.add_parser(
        "influx",
        help="prepare InfluxDB 1.x/2.x/3.x for the gateway (database, retention, bucket, DBRP)",
    )
    isub = influx.add_subparsers(dest="influx_command", metavar="SUBCOMMAND", required=True)
    setup = isub.add_parser(
        "setup",
        help="create what the gateway needs on InfluxDB, as far as the credentials allow",
        description="Check and create what the gateway needs on its InfluxDB, from the"
        " gateway settings (--config FILE, SENSORGATE_INFLUX__*). api = 'v1' on InfluxDB"
        " 1.x: the database and its retention policies (influx.retention: raw, the"
        " default; aggregates; dead letters), a changed duration applied. api = 'v2' on"
        " InfluxDB 2.x: the bucket in the org, and the DBRP mappings"
        " database/dbrp_retention_policy (and each policy name) -> bucket that InfluxQL"
        " reads (the CLI, the dashboard, Grafana) need. api = 'v3' on InfluxDB 3: the"
        " database. Then it checks that InfluxQL answers. Idempotent; it never deletes"
        " anything, and changes only the gateway's own retention policies. A step the"
        " credentials may not do is reported with the command an admin runs instead."
        " Exit 0 ready, 1 not ready, 2 settings refused.",
        epilog="See docs/influxdb.md.",
    )
    setup.add_argument("--check", action="store_true", help="only check and report; create nothing")
    setup.add_argument("--json", action="store_true", help="print the report as JSON")
    setup.set_defaults(func=_cmd_setup)


def _cmd_setup(args: argparse.Namespace) -> int:
    from gateway.influx.setup import setup_influx
    from gateway.settings import load_settings

    settings = load_settings()
    report = setup_influx(settings.influx, create=not args.check)
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.ok else 1
