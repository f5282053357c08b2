"""Measure the edge's own costs: outbox writes and the drain through a real broker.

    python -m edge.bench --port 1883 [--host 127.0.0.1] [--events 5000] [--readings 10]

Prints a JSON document (and writes it with ``--out FILE``): outbox inserts per second
with ``durability`` full and normal, and how fast a backlog of ``--events`` telemetry
events drains to the broker with no rate limit (PUBACK-confirmed, deleted from the
outbox). Needs a running broker; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from contract.codec import encode
from contract.events import Reading, TelemetryEvent
from edge.mqtt import MqttLink, MqttSettings
from edge.outbox import Outbox
from edge.publisher import Publisher

__all__ = ["main"]


def _payload(seq: int, readings: int) -> bytes:
    now = datetime.now(UTC)
    return encode(
        TelemetryEvent.create(
            site="bench",
            device="bench-1",
            sequence=seq,
            readings=[
                Reading(sensor="s", metric=f"m{i}", value=20.0 + i, unit="degC", time=now)
                for i in range(readings)
            ],
        )
    )


def _insert_rate(workdir: Path, durability: str, n: int, payload: bytes) -> float:
    with Outbox(workdir / f"{durability}.db", durability=durability) as box:  # type: ignore[arg-type]
        t0 = time.perf_counter()
        for _ in range(n):
            box.put("t", payload)
        return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print them as JSON."""
    parser = argparse.ArgumentParser(prog="python -m edge.bench")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--readings", type=int, default=10)
    parser.add_argument("--inflight", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    payload = _payload(0, args.readings)
    with tempfile.TemporaryDirectory(prefix="sg-edge-bench-") as tmp:
        work = Path(tmp)
        result: dict[str, object] = {
            "events": args.events,
            "readings_per_event": args.readings,
            "payload_bytes": len(payload),
            "outbox_insert_per_s_full": round(_insert_rate(work, "full", 500, payload)),
            "outbox_insert_per_s_normal": round(_insert_rate(work, "normal", 2000, payload)),
        }
        box = Outbox(work / "drain.db", durability="normal")
        for seq in range(args.events):
            box.put("sgbench/bench/bench-1/telemetry", _payload(seq, args.readings))
        link = MqttLink(MqttSettings(host=args.host, port=args.port, client_id="sg-edge-bench"))
        link.start()
        publisher = Publisher(link, box, max_rate=0, max_inflight=args.inflight)
        try:
            t0 = time.perf_counter()
            publisher.start()
            while box.depth:
                time.sleep(0.01)
            elapsed = time.perf_counter() - t0
        finally:
            publisher.stop(drain_s=0)
            link.stop()
            box.close()
        result["drain_s"] = round(elapsed, 3)
        result["drain_events_per_s"] = round(args.events / elapsed)
        result["drain_readings_per_s"] = round(args.events * args.readings / elapsed)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
