"""The naive peer of ``sensorgate bench``: the script many MQTT-to-InfluxDB tutorials show.

A paho ``on_message`` callback ``json.loads`` each message, builds one line-protocol line
per reading with an f-string, and sends one HTTP write per message to influxd's
``/write`` (precision ms). It uses no SensorGate code on purpose: it stands for what a
user would write instead of running a gateway. Its one liberty is a kept-alive HTTP
connection (``httpx.Client``), as a ``requests.Session`` would give.

Run as its own process::

    python -m gateway.bench.naive_peer --port 1883 --influx-url http://127.0.0.1:8086 \
        --database bench --ready-file /tmp/ready

It subscribes with QoS 1, creates ``--ready-file`` once the broker granted the
subscription, and runs until SIGTERM, then prints one JSON line with its counts.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

__all__ = ["main", "to_lines"]


def to_lines(topic: str, payload: bytes | bytearray) -> str:
    """Return the line protocol of one telemetry message (one line per reading)."""
    *_prefix, site, device, _kind = topic.split("/")
    event = json.loads(payload)
    lines = []
    for r in event["data"]["readings"]:
        ms = round(datetime.fromisoformat(r["time"]).timestamp() * 1000)
        lines.append(
            f"readings,site={site},device={device},sensor={r['sensor']},metric={r['metric']}"
            f" value={float(r['value'])} {ms}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Subscribe and write until SIGTERM; print ``{"messages", "readings", "errors"}``."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway.bench.naive_peer", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", default="sg/v1/+/+/telemetry")
    parser.add_argument("--influx-url", required=True)
    parser.add_argument("--database", default="bench")
    parser.add_argument("--ready-file", type=Path, default=None)
    args = parser.parse_args(argv)

    http = httpx.Client(base_url=args.influx_url, timeout=30.0)
    stats = {"messages": 0, "readings": 0, "errors": 0}
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            body = to_lines(msg.topic, msg.payload)
            response = http.post(
                "/write", params={"db": args.database, "precision": "ms"}, content=body
            )
            response.raise_for_status()
        except Exception as exc:  # a naive script logs and moves on: that message is lost
            stats["errors"] += 1
            print(f"write failed: {exc}", file=sys.stderr)
            return
        stats["messages"] += 1
        stats["readings"] += body.count("\n") + 1

    def on_subscribe(*_a: object) -> None:
        if args.ready_file is not None:
            args.ready_file.write_text("subscribed\n")

    # Raw paho on purpose, not edge.mqtt.MqttLink: this is the script a user would write.
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="sg-naive")
    client.on_connect = lambda c, *_a: c.subscribe(args.topic, qos=1)
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(args.host, args.port)
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    client.loop_start()
    done.wait()
    client.loop_stop()
    client.disconnect()
    http.close()
    print(json.dumps({"event": "done", **stats}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
