"""``sensorgate up`` and ``sensorgate services``: the local stack from the command line."""

from __future__ import annotations

import argparse
import contextlib
import sys

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``up`` and ``services``."""
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


def _cmd_up(args: argparse.Namespace) -> int:
    from gateway.localstack.up import run_up

    return run_up(
        devices=args.devices,
        interval_s=args.interval,
        duration_s=args.duration,
        as_json=args.json,
        dashboard_port=args.dashboard_port,
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
