"""The naive baseline of ``sensorgate bench``: one InfluxDB write per MQTT message.

A paho ``on_message`` callback decodes each message and writes its readings with
``influxdb-client`` (synchronous, one request per message), which is how many IoT
tutorials wire MQTT to InfluxDB. Run as its own process by the benchmark; on SIGTERM it
prints a JSON line with what it wrote.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from paho.mqtt.enums import CallbackAPIVersion

from contract import TelemetryEvent, decode_as
from contract.errors import DecodeError
from gateway.influx.lineprotocol import reading_lines

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Subscribe and write until SIGTERM; print ``{"messages", "readings", ...}``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", default="sg/v1")
    parser.add_argument("--influx-url", required=True)
    parser.add_argument("--bucket", default="bench")
    args = parser.parse_args(argv)

    client = InfluxDBClient(url=args.influx_url, token="bench", org="bench")
    write_api = client.write_api(write_options=SYNCHRONOUS)
    stats = {"messages": 0, "readings": 0, "errors": 0, "first": 0.0, "last": 0.0}
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            event = decode_as(msg.payload, TelemetryEvent)
            write_api.write(bucket=args.bucket, record=reading_lines(event), write_precision="ns")
        except (DecodeError, Exception):  # a naive consumer just counts and moves on
            stats["errors"] += 1
            return
        now = time.monotonic()
        stats["first"] = stats["first"] or now
        stats["last"] = now
        stats["messages"] += 1
        stats["readings"] += len(event.data.readings)

    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="sg-baseline")
    sub.on_connect = lambda c, *_a: c.subscribe(f"{args.prefix}/+/+/telemetry", qos=1)
    sub.on_message = on_message
    sub.connect(args.host, args.port)
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    sub.loop_start()
    print(json.dumps({"event": "ready"}), flush=True)
    done.wait()
    sub.loop_stop()
    sub.disconnect()
    client.close()
    span = stats["last"] - stats["first"]
    stats["readings_per_s"] = stats["readings"] / span if span > 0 else 0.0
    print(json.dumps({"event": "done", **stats}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
