"""The burst publisher of ``sensorgate bench``, run as its own process.

``python -m gateway.bench.publisher --port P [workload knobs] [--dialect D]`` renders
every payload first (SensorGate's own events, or a foreign dialect:
:mod:`gateway.bench.dialects`), connects, prints ``{"event": "ready", ...}`` and waits
for a line on stdin; then it publishes the burst as fast as the broker takes it (a
bounded number of messages awaiting their PUBACK), waits for the last acknowledgement
and prints ``{"event": "done", ...}`` with the moment of the first publish on the
system's monotonic clock (shared by every process on Linux, so the benchmark can
subtract it from its own readings).

Publishing from another process keeps the benchmark's own Python threads (sampling,
polling) from competing with the publisher for one interpreter lock.
"""

from __future__ import annotations

import argparse
import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from contract.errors import BrokerError, SensorGateError
from edge.mqtt import MqttSettings
from gateway.bench.dialects import BENCH_DIALECTS, DialectBurst, render_dialect_burst
from gateway.bench.workload import Workload
from simulators.links import LinkPool
from simulators.loadgen import in_flight_window

__all__ = ["PublisherProcess", "main", "publisher_argv"]


def publisher_argv(
    workload: Workload, *, host: str, port: int, dialect: str = "native"
) -> list[str]:
    """Return the arguments after ``python -m gateway.bench.publisher`` for ``workload``."""
    return [
        "--host",
        host,
        "--port",
        str(port),
        "--devices",
        str(workload.devices),
        "--readings-per-message",
        str(workload.readings_per_message),
        "--total",
        str(workload.total),
        "--sensors-per-device",
        str(workload.sensors_per_device),
        "--qos",
        str(workload.qos),
        "--prefix",
        workload.topic_prefix,
        "--dialect",
        dialect,
    ]


class PublisherProcess:
    """The parent's side: start the publisher, wait until it is ready, start the burst.

    ``env`` is the child's environment (the benchmark passes one that imports this very
    tree). ``dialect`` renders the burst as a foreign family would publish it.
    """

    def __init__(
        self,
        workload: Workload,
        *,
        host: str,
        port: int,
        log_path: Path,
        env: dict[str, str],
        dialect: str = "native",
    ) -> None:
        argv = [
            sys.executable,
            "-m",
            "gateway.bench.publisher",
            *publisher_argv(workload, host=host, port=port, dialect=dialect),
        ]
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self.log_path = log_path
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put("")

    def _next(self, expected: str, timeout_s: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise BrokerError(
                f"the burst publisher said nothing for {timeout_s:.0f} s (waiting for"
                f" {expected!r}); its log: {self.log_path}"
            ) from None
        if not line:
            tail = self.log_path.read_text(errors="replace").splitlines()[-10:]
            raise BrokerError(
                f"the burst publisher exited (code {self.proc.poll()}) before {expected!r}:\n"
                + "\n".join(tail)
            )
        doc = dict(json.loads(line))
        if doc.get("event") == "error":
            raise BrokerError(f"the burst publisher failed: {doc.get('error')}")
        if doc.get("event") != expected:
            raise BrokerError(f"the burst publisher said {doc!r}; expected {expected!r}")
        return doc

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        """Wait until every payload is rendered and the publisher is connected."""
        return self._next("ready", timeout_s)

    def go(self) -> None:
        """Start the burst."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def wait_done(self, timeout_s: float) -> dict[str, Any]:
        """Wait for the publisher's report: first publish time, acknowledgements."""
        return self._next("done", timeout_s)

    def stop(self) -> None:
        """End the child (if it still runs) and close the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        self._log.close()


def _emit(event: str, **fields: object) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Render, connect, wait for a line on stdin, publish, report."""
    args = _parser().parse_args(argv)
    workload = Workload(
        devices=args.devices,
        readings_per_message=args.readings_per_message,
        total=args.total,
        sensors_per_device=args.sensors_per_device,
        qos=args.qos,
        topic_prefix=args.prefix,
    )
    t = time.monotonic()
    burst = render_dialect_burst(workload, args.dialect)
    render_s = time.monotonic() - t
    pool = LinkPool(
        MqttSettings(host=args.host, port=args.port),
        client_prefix=f"sg-bench-pub-{time.time_ns():x}",
        max_in_flight=in_flight_window(max(1, burst.readings // max(1, burst.reading_messages))),
    )
    try:
        pool.start()
    except SensorGateError as exc:
        _emit("error", error=str(exc))
        return 1
    try:
        _emit(
            "ready",
            messages=len(burst.payloads),
            reading_messages=burst.reading_messages,
            bytes=burst.bytes,
            render_s=round(render_s, 3),
            base_us=burst.base_us,
            readings=burst.readings,
            dialect=burst.dialect,
        )
        if not sys.stdin.readline():  # the benchmark went away
            return 1
        return _publish(pool, burst, workload.qos, args.ack_timeout)
    except SensorGateError as exc:
        _emit("error", error=str(exc))
        return 1
    finally:
        pool.stop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.bench.publisher", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--readings-per-message", type=int, default=50)
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--sensors-per-device", type=int, default=50)
    parser.add_argument("--qos", type=int, default=1, choices=[0, 1])
    parser.add_argument("--prefix", default="sg/v1")
    parser.add_argument("--dialect", choices=BENCH_DIALECTS, default="native")
    parser.add_argument("--ack-timeout", type=float, default=300.0)
    return parser


def _publish(pool: LinkPool, burst: DialectBurst, qos: int, ack_timeout_s: float) -> int:
    """Publish the whole burst, wait for its acknowledgements, report; 0 if all came."""
    first = time.monotonic()
    for topic, payload, retain in zip(burst.topics, burst.payloads, burst.retain, strict=True):
        pool.publish(topic, payload, qos=qos, retain=retain)
    published = time.monotonic()
    acked = pool.wait_acknowledged(ack_timeout_s)
    done = time.monotonic()
    _emit(
        "done",
        first_publish=first,
        published_s=round(published - first, 4),
        acknowledged_s=round(done - first, 4),
        messages=pool.published,
        acknowledged=pool.acknowledged,
        all_acknowledged=acked,
        stalls=pool.stalls,
    )
    return 0 if acked else 1


if __name__ == "__main__":
    sys.exit(main())
