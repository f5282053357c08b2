"""``sensorgate bench-alarms``: alarm latency under background load.

Starts local mosquitto and influxd, the gateway in its own process (default adaptive
and deadman rules on every series, plus one threshold rule on a probe device), and
``sensorgate loadgen`` in another process for the background load (default 10,000
readings/s in 50-reading messages over 100 devices x 10 metrics). Once the gateway
stores the load, a probe publishes a reading that crosses the threshold and waits for
the ``alarm.raised`` event on MQTT, then a reading that clears it and waits for the
``alarm.cleared``; repeated ``--crossings`` times. Latency is publish of the
crossing reading to the raised event received, on one clock (same host). Prints the
figures and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["register", "run_bench_alarms"]

_PROBE_RULES = """
version = 1

[defaults]
adaptive = true
deadman = "5m"
offline = true

[[rules]]
id = "probe-high"
kind = "threshold"
site = "bench"
device = "probe"
metric = "level"
above = 100
clear = 50
flap_count = 0    # the probe crosses on purpose, again and again: not flapping
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench-alarms`` to a ``sensorgate`` parser."""
    p = subparsers.add_parser(
        "bench-alarms",
        help="alarm latency (threshold crossing -> alarm on MQTT) under background load",
        description="Start local services, the gateway and a background load generator in"
        " their own processes; measure publish-of-crossing-reading to alarm-received on"
        " MQTT for --crossings threshold crossings. Prints p50/p99 and writes JSON.",
    )
    p.add_argument("--rate", type=int, default=10_000, help="background readings/s (10000)")
    p.add_argument("--crossings", type=int, default=80, help="threshold crossings (80)")
    p.add_argument(
        "--readings-per-message", type=int, default=50, help="background message size (50)"
    )
    p.add_argument("--devices", type=int, default=100, help="background devices (100)")
    p.add_argument("--metrics", type=int, default=10, help="metrics per device (10)")
    p.add_argument("--out", default="reports/bench-alarms.json", help="JSON report path")
    p.add_argument("--json", action="store_true", help="print the JSON report")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    report = run_bench_alarms(
        rate=args.rate,
        crossings=args.crossings,
        readings_per_message=args.readings_per_message,
        devices=args.devices,
        metrics=args.metrics,
        progress=lambda m: print(m, file=sys.stderr, flush=True),
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        lat = report["latency_s"]
        bg = report["background"]
        print(
            f"alarm latency over {lat['count']} crossings at {bg['gateway_readings_per_s']:,.0f}"
            f" readings/s stored by the gateway (loadgen target {bg['target_readings_per_s']:,}):"
            f"\n  p50 {lat['p50'] * 1000:.0f} ms  p90 {lat['p90'] * 1000:.0f} ms"
            f"  p99 {lat['p99'] * 1000:.0f} ms  max {lat['max'] * 1000:.0f} ms"
            f"\n  clear latency p50 {report['clear_latency_s']['p50'] * 1000:.0f} ms"
            f"  p99 {report['clear_latency_s']['p99'] * 1000:.0f} ms"
            f"\n  within 1 s: {lat['within_1s']}/{lat['count']}   report: {out}"
        )
    return 0 if report["latency_s"]["p99"] <= 1.0 else 1


def _quantiles(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)

    def q(p: float) -> float:
        # Nearest rank: with ~100 samples p99 is the 99th, not an interpolation.
        return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered) + 0.5) - 1))]

    return {
        "count": len(ordered),
        "p50": q(0.50),
        "p90": q(0.90),
        "p99": q(0.99),
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
        "within_1s": sum(1 for v in ordered if v <= 1.0),
    }


class _Probe:
    """Publishes probe readings and receives the probe device's alarm events."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        from contract import TopicScheme
        from edge.mqtt import MqttLink, MqttSettings

        self.topics = TopicScheme(prefix)
        self.topic = self.topics.telemetry("bench", "probe")
        self.seq = 0
        self._cond = threading.Condition()
        self.received: list[tuple[float, Any]] = []
        self._subscribed = threading.Event()
        alarms = self.topics.alarms("bench", "probe")
        self.sub = MqttLink(
            MqttSettings(host=host, port=port, client_id=f"bench-alarms-sub-{os.getpid()}"),
            on_connect=lambda link: link.subscribe(alarms, qos=1),
            on_message=self._on_message,
        )
        self.sub.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.pub = MqttLink(
            MqttSettings(host=host, port=port, client_id=f"bench-alarms-pub-{os.getpid()}")
        )

    def _on_message(self, msg: Any) -> None:
        from contract.alarms import decode_alarm

        arrived = time.monotonic()
        event = decode_alarm(bytes(msg.payload))
        with self._cond:
            self.received.append((arrived, event))
            self._cond.notify_all()

    def start(self) -> None:
        self.sub.start()
        if not self._subscribed.wait(10):
            raise TimeoutError("no SUBACK for the probe's alarm topic")
        self.pub.start()

    def stop(self) -> None:
        self.sub.stop()
        self.pub.stop()

    def send(self, value: float) -> tuple[str, float]:
        """Publish one reading; return the event id and the monotonic publish time."""
        from contract import Reading, TelemetryEvent, encode

        self.seq += 1
        event = TelemetryEvent.create(
            site="bench",
            device="probe",
            sequence=self.seq,
            readings=[Reading(sensor="p", metric="level", value=value, time=datetime.now(UTC))],
        )
        body = encode(event)
        sent = time.monotonic()
        self.pub.publish(self.topic, body, qos=1)
        return event.id, sent

    def wait_for(self, transition: str, cause: str, timeout: float) -> float | None:
        """Wait for the event of ``transition`` caused by event ``cause``; its arrival time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for arrived, event in self.received:
                    data = event.data
                    if (
                        event.type.split(".")[-2] == transition
                        and data.rule == "probe-high"
                        and data.cause_event_id == cause
                    ):
                        return arrived
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)


def _readings_in(port: int) -> float:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("sensorgate_readings_in_total "):
            return float(line.split()[1])
    return 0.0


def run_bench_alarms(
    *,
    rate: int = 10_000,
    crossings: int = 80,
    readings_per_message: int = 50,
    devices: int = 100,
    metrics: int = 10,
    progress: Any = lambda _m: None,
) -> dict[str, Any]:
    """Run the benchmark; return the report (see the module docstring)."""
    import httpx
    import psutil

    from contract.errors import SensorGateError
    from gateway.services import LocalServices, ManagedProcess, free_port
    from gateway.settings import load_settings, settings_env

    with LocalServices() as local:
        ep = local.endpoints
        rules = local.workdir / "bench-rules.toml"
        rules.write_text(_PROBE_RULES)
        settings = load_settings(
            topic_prefix="bench/alarms",
            mqtt={"host": ep.mqtt_host, "port": ep.mqtt_port},
            influx={"url": ep.influx_url, "database": "bench_alarms"},
            metrics_port=free_port(),
            rules_file=rules,
        )
        port = settings.metrics_port
        gateway = ManagedProcess(
            "gateway",
            [sys.executable, "-m", "gateway.cli", "gateway", "run"],
            local.workdir / "gateway.log",
            env={**os.environ, **settings_env(settings)},
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if not gateway.alive():
                    raise SensorGateError(f"the gateway exited:\n{gateway.log_tail()}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SensorGateError("the gateway did not become ready")
                time.sleep(0.2)
            probe = _Probe(ep.mqtt_host, ep.mqtt_port, settings.topic_prefix)
            probe.start()
            # Loadgen runs long enough to cover the crossings (each well under 2 s).
            duration = 15 + crossings * 1.0
            loadgen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway.cli",
                    "loadgen",
                    "--host",
                    ep.mqtt_host,
                    "--port",
                    str(ep.mqtt_port),
                    "--prefix",
                    settings.topic_prefix,
                    "--rate",
                    str(rate),
                    "--readings-per-message",
                    str(readings_per_message),
                    "--devices",
                    str(devices),
                    "--metrics",
                    str(metrics),
                    "--duration",
                    str(duration),
                    "--qos",
                    "1",
                    "--json",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                progress(f"background load {rate:,} readings/s; warming up")
                # Warm-up: five seconds of load stored, so every series' detectors exist
                # and the adaptive ones are past their learning readings.
                warm_deadline = time.monotonic() + 60
                while _readings_in(port) < rate * 5:
                    if time.monotonic() > warm_deadline or loadgen.poll() is not None:
                        raise SensorGateError("the gateway did not take the background load")
                    time.sleep(0.5)
                before_in, before_t = _readings_in(port), time.monotonic()
                cpu_before = psutil.Process(gateway.pid).cpu_times()
                latencies: list[float] = []
                clears: list[float] = []
                missed = 0
                for i in range(crossings):
                    probe.send(10.0)  # a quiet value first: each crossing starts below
                    cause, sent = probe.send(150.0)
                    got = probe.wait_for("raised", cause, 10.0)
                    if got is None:
                        missed += 1
                        continue
                    latencies.append(got - sent)
                    cause, sent = probe.send(10.0)
                    got = probe.wait_for("cleared", cause, 10.0)
                    if got is not None:
                        clears.append(got - sent)
                    if (i + 1) % 20 == 0:
                        progress(f"{i + 1}/{crossings} crossings")
                after_in, after_t = _readings_in(port), time.monotonic()
                cpu_after = psutil.Process(gateway.pid).cpu_times()
            finally:
                # SIGINT: the load generator stops like on Ctrl-C and prints its report.
                loadgen.send_signal(signal.SIGINT)
                try:
                    out, _err = loadgen.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    loadgen.kill()
                    out, _err = loadgen.communicate()
            probe.stop()
        finally:
            gateway.stop(timeout=20)
    span = after_t - before_t
    cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    if not latencies:
        raise SensorGateError(f"no alarm arrived for {crossings} crossings")
    # The generator's own report, when it printed one after the SIGINT (else None: the
    # rate that counts is the one the gateway stored, measured above).
    loadgen_report: dict[str, Any] | None = None
    if out.strip():
        try:
            loadgen_report = json.loads(out)
        except json.JSONDecodeError:
            loadgen_report = None
    return {
        "started_at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "rules": "defaults (adaptive, deadman 5m, offline) on every series + probe threshold",
        "background": {
            "target_readings_per_s": rate,
            "readings_per_message": readings_per_message,
            "devices": devices,
            "metrics": metrics,
            "gateway_readings_per_s": (after_in - before_in) / span if span > 0 else 0.0,
            "gateway_cpu_share": cpu / span if span > 0 else 0.0,
            "loadgen": loadgen_report,
        },
        "crossings": crossings,
        "missed": missed,
        "latency_s": _quantiles(latencies),
        "clear_latency_s": _quantiles(clears) if clears else None,
        "samples_s": latencies,
    }
