"""``sensorgate bench``: measure the gateway against a naive baseline in one run.

For each scenario the benchmark starts fresh local services, runs the gateway in its
own process and the load generator (``sensorgate loadgen``) in another, and measures:

- sustained readings/s stored: the load generator publishes at the scenario's target
  rate; the broker queues what the gateway cannot take yet, and the gateway's own
  ``points_written`` counter gives the rate at which readings reach InfluxDB while it
  has work (it keeps up: the target; it falls behind: its capacity);
- latency at half that rate: from a message's arrival at the gateway to its readings
  being stored (p50/p99 from the gateway's histogram), and from the reading's event
  time (stamped by the load generator) to stored;
- the gateway's peak RSS and its CPU use (share of one core).

The baseline is a paho ``on_message`` callback writing each message with
``influxdb-client`` (:mod:`gateway.bench_baseline`). influxd 1.6 has no v2 write API, so
the baseline writes to VictoriaMetrics (which accepts InfluxDB v2 writes), and in the
same run the gateway is measured against that same server with its v2 writer: the
ratio compares like with like.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from contract.errors import SensorGateError
from gateway.services import LocalServices, ManagedProcess, free_port, start_victoria_metrics
from gateway.settings import GatewaySettings, load_settings, settings_env

__all__ = ["SCENARIOS", "BenchReport", "Scenario", "ScenarioResult", "run_bench"]


@dataclass(frozen=True)
class Scenario:
    """A fleet shape to measure."""

    name: str
    devices: int
    metrics: int
    target_readings_per_s: float
    readings_per_message: int = 50


SCENARIOS = {
    "1k": Scenario("1k", devices=1_000, metrics=10, target_readings_per_s=150_000),
    "10k": Scenario("10k", devices=10_000, metrics=10, target_readings_per_s=50_000),
}


@dataclass
class ScenarioResult:
    """What one scenario measured."""

    scenario: str
    devices: int
    metrics: int
    series: int
    readings_per_message: int
    target: str
    published_readings_per_s: float = 0.0
    sustained_readings_per_s: float = 0.0
    limited_by: str = ""
    latency_rate_readings_per_s: float = 0.0
    arrival_to_stored_p50_s: float | None = None
    arrival_to_stored_p99_s: float | None = None
    event_to_stored_p50_s: float | None = None
    event_to_stored_p99_s: float | None = None
    gateway_peak_rss_mb: float = 0.0
    gateway_cpu_share: float = 0.0
    """Average share of one core while saturated."""
    readings_stored: int = 0
    readings_published: int = 0


@dataclass
class BenchReport:
    """The whole run."""

    started_at: str
    duration_s: float
    machine: dict[str, Any]
    results: list[ScenarioResult] = field(default_factory=list)
    baseline: dict[str, Any] = field(default_factory=dict)
    rules_file: str | None = None
    """The gateway's alarm rules (None: the defaults, adaptive on every series)."""


# -- scraping -----------------------------------------------------------------------


def _scrape(port: int) -> dict[str, Any]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sensorgate_points_written_total":
                out[f"written:{sample.labels['measurement']}"] = sample.value
            elif sample.name.endswith("_bucket"):
                out.setdefault(sample.name, []).append((float(sample.labels["le"]), sample.value))
            elif sample.name in ("sensorgate_readings_in_total", "sensorgate_messages_in_total"):
                out[sample.name] = sample.value
    return out


def _quantile(
    before: list[tuple[float, float]], after: list[tuple[float, float]], q: float
) -> float | None:
    """Estimate a quantile from the change of a cumulative histogram (linear in a bucket)."""
    prev = dict(before)
    buckets = sorted((le, count - prev.get(le, 0.0)) for le, count in after)
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower_le, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower_le
            span = count - lower_count
            frac = (rank - lower_count) / span if span else 1.0
            return lower_le + (le - lower_le) * frac
        lower_le, lower_count = le, count
    return None


# -- processes ----------------------------------------------------------------------


class _Gateway:
    def __init__(self, settings: GatewaySettings, workdir: Path, name: str) -> None:
        self.settings = settings
        self.port = settings.metrics_port
        self.proc = ManagedProcess(
            name,
            [sys.executable, "-m", "gateway.cli", "gateway", "run"],
            workdir / f"{name}.log",
            env={**os.environ, **settings_env(settings)},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise SensorGateError(f"the gateway exited:\n{self.proc.log_tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SensorGateError(f"the gateway did not become ready:\n{self.proc.log_tail()}")

    def stop(self) -> None:
        self.proc.stop(timeout=20)


class _Sampler:
    """Samples the gateway's RSS, CPU and written counter while a phase runs."""

    def __init__(self, gateway: _Gateway, measurement_key: str = "written:readings") -> None:
        self.gateway = gateway
        self.key = measurement_key
        self.ps = psutil.Process(gateway.proc.pid)
        self.samples: list[tuple[float, float, float]] = []  # (t, written, cpu seconds)
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                written = _scrape(self.gateway.port).get(self.key, 0.0)
                cpu = self.ps.cpu_times()
                self.peak_rss = max(self.peak_rss, self.ps.memory_info().rss)
            except (httpx.HTTPError, psutil.Error):
                written, cpu = (self.samples[-1][1] if self.samples else 0.0), None
            if cpu is not None:
                self.samples.append((time.monotonic(), written, cpu.user + cpu.system))
            self._stop.wait(0.5)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def saturated_rate(self) -> tuple[float, float]:
        """Readings/s and CPU share over the span in which the counter was rising."""
        rising = [s for i, s in enumerate(self.samples) if i and s[1] > self.samples[i - 1][1]]
        if len(rising) < 2:
            return 0.0, 0.0
        # Skip the first rising sample: it includes start-up.
        first, last = rising[0], rising[-1]
        span = last[0] - first[0]
        if span <= 0:
            return 0.0, 0.0
        return (last[1] - first[1]) / span, (last[2] - first[2]) / span


def _loadgen(
    settings: GatewaySettings, scenario: Scenario, *, rate: float | None, duration_s: float
) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "gateway.cli",
        "loadgen",
        "--host",
        settings.mqtt.host,
        "--port",
        str(settings.mqtt.port),
        "--prefix",
        settings.topic_prefix,
        "--readings-per-message",
        str(scenario.readings_per_message),
        "--devices",
        str(scenario.devices),
        "--metrics",
        str(scenario.metrics),
        "--duration",
        str(duration_s),
        "--qos",
        "1",
        "--json",
    ]
    argv += ["--rate", "0" if rate is None else str(int(rate))]  # 0: as fast as it can
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 120)
    if not done.stdout.strip():
        raise SensorGateError(f"the load generator failed ({done.returncode}):\n{done.stderr}")
    return dict(json.loads(done.stdout))


def _wait_drained(gateway: _Gateway, target: float, key: str, idle_s: float = 10) -> float:
    """Wait until ``target`` readings are written or the counter stops moving."""
    last, last_change = -1.0, time.monotonic()
    while True:
        written = _scrape(gateway.port).get(key, 0.0)
        if written >= target:
            return written
        if written != last:
            last, last_change = written, time.monotonic()
        elif time.monotonic() - last_change > idle_s:
            return written
        time.sleep(0.5)


# -- scenarios ----------------------------------------------------------------------


def _measure(
    settings: GatewaySettings,
    scenario: Scenario,
    workdir: Path,
    *,
    duration_s: float,
    target: str,
    progress: Callable[[str], None],
    latency: bool = True,
) -> ScenarioResult:
    result = ScenarioResult(
        scenario=scenario.name,
        devices=scenario.devices,
        metrics=scenario.metrics,
        series=scenario.devices * scenario.metrics,
        readings_per_message=scenario.readings_per_message,
        target=target,
    )
    gateway = _Gateway(settings, workdir, f"gateway-{scenario.name}-{target}")
    try:
        with _Sampler(gateway) as sampler:
            rate_target = scenario.target_readings_per_s
            progress(
                f"{scenario.name}/{target}: {rate_target:,.0f} readings/s for {duration_s:.0f} s"
            )
            load = _loadgen(settings, scenario, rate=rate_target, duration_s=duration_s)
            result.published_readings_per_s = float(load.get("readings_per_s", 0.0))
            result.readings_published = int(load.get("readings", 0))
            stored = _wait_drained(gateway, result.readings_published, "written:readings")
        result.readings_stored = int(stored)
        rate, cpu = sampler.saturated_rate()
        result.sustained_readings_per_s = rate
        result.gateway_cpu_share = cpu
        result.limited_by = (
            "kept up" if rate >= 0.95 * result.published_readings_per_s else "gateway capacity"
        )
        progress(
            f"{scenario.name}/{target}: {rate:,.0f} readings/s stored"
            f" ({result.published_readings_per_s:,.0f}/s published)"
        )
        if latency and rate > 0:
            half = rate / 2
            result.latency_rate_readings_per_s = half
            before = _scrape(gateway.port)
            progress(f"{scenario.name}/{target}: latency at {half:,.0f} readings/s")
            with _Sampler(gateway) as more:
                load = _loadgen(settings, scenario, rate=half, duration_s=max(10, duration_s / 2))
                _wait_drained(
                    gateway,
                    before.get("written:readings", 0) + load["readings"],
                    "written:readings",
                )
            after = _scrape(gateway.port)
            arrival = "sensorgate_arrival_to_stored_seconds_bucket"
            lag = "sensorgate_end_to_end_lag_seconds_bucket"
            result.arrival_to_stored_p50_s = _quantile(before[arrival], after[arrival], 0.5)
            result.arrival_to_stored_p99_s = _quantile(before[arrival], after[arrival], 0.99)
            result.event_to_stored_p50_s = _quantile(before[lag], after[lag], 0.5)
            result.event_to_stored_p99_s = _quantile(before[lag], after[lag], 0.99)
            sampler.peak_rss = max(sampler.peak_rss, more.peak_rss)
        result.gateway_peak_rss_mb = sampler.peak_rss / 1e6
    finally:
        gateway.stop()
    return result


def _baseline(
    settings: GatewaySettings,
    scenario: Scenario,
    vm_url: str,
    workdir: Path,
    duration_s: float,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    progress(f"baseline: paho on_message + influxdb-client, {scenario.name}, {duration_s:.0f} s")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.bench_baseline",
            "--port",
            str(settings.mqtt.port),
            "--prefix",
            settings.topic_prefix,
            "--influx-url",
            vm_url,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        json.loads(proc.stdout.readline())  # ready
        ps = psutil.Process(proc.pid)
        load = _loadgen(
            settings, scenario, rate=scenario.target_readings_per_s, duration_s=duration_s
        )
        rss = ps.memory_info().rss
        # Give it as long again to catch up, then stop it and read what it wrote.
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            time.sleep(1)
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        done = json.loads(out.strip().splitlines()[-1])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    return {
        "scenario": scenario.name,
        "published_readings_per_s": load.get("readings_per_s", 0.0),
        "readings_published": load.get("readings", 0),
        "readings_written": done["readings"],
        "sustained_readings_per_s": done["readings_per_s"],
        "rss_mb": rss / 1e6,
    }


def run_bench(
    *,
    scenarios: list[str],
    duration_s: float = 20.0,
    baseline: bool = True,
    rules_file: str | None = None,
    progress: Callable[[str], None] = lambda _m: None,
) -> BenchReport:
    """Run the benchmark and return its report.

    ``rules_file`` is the gateway's alarm rules; None means the defaults (the adaptive
    detector on every series), an empty rules file measures storage alone.
    """
    report = BenchReport(
        rules_file=rules_file,
        started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        duration_s=duration_s,
        machine={
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": sys.version.split()[0],
        },
    )
    for name in scenarios:
        scenario = SCENARIOS[name]
        with LocalServices() as local:
            ep = local.endpoints
            settings = load_settings(
                mqtt={"host": ep.mqtt_host, "port": ep.mqtt_port},
                influx={"url": ep.influx_url, "database": "bench"},
                metrics_port=free_port(),
                rules_file=rules_file,
            )
            report.results.append(
                _measure(
                    settings,
                    scenario,
                    local.workdir,
                    duration_s=duration_s,
                    target="influxd-v1",
                    progress=progress,
                )
            )
    if baseline:
        scenario = SCENARIOS[scenarios[0]]
        with LocalServices() as local, tempfile.TemporaryDirectory() as tmp:
            vm, vm_port = start_victoria_metrics(Path(tmp))
            try:
                vm_url = f"http://127.0.0.1:{vm_port}"
                ep = local.endpoints
                base_settings = load_settings(
                    topic_prefix="bench/base", mqtt={"host": ep.mqtt_host, "port": ep.mqtt_port}
                )
                naive = _baseline(
                    base_settings, scenario, vm_url, local.workdir, duration_s, progress
                )
                v2 = load_settings(
                    topic_prefix="bench/v2",
                    mqtt={"host": ep.mqtt_host, "port": ep.mqtt_port},
                    influx={
                        "url": vm_url,
                        "api": "v2",
                        "token": "bench",
                        "org": "bench",
                        "bucket": "bench",
                    },
                    metrics_port=free_port(),
                    rules_file=rules_file,
                )
                ours = _measure(
                    v2,
                    scenario,
                    local.workdir,
                    duration_s=duration_s,
                    target="victoria-metrics-v2",
                    progress=progress,
                    latency=False,
                )
                report.results.append(ours)
                naive["gateway_sustained_readings_per_s"] = ours.sustained_readings_per_s
                naive["ratio"] = (
                    ours.sustained_readings_per_s / naive["sustained_readings_per_s"]
                    if naive["sustained_readings_per_s"]
                    else None
                )
                report.baseline = naive
            finally:
                vm.stop()
    return report


def report_json(report: BenchReport) -> str:
    """Return the report as JSON."""
    return json.dumps(asdict(report), indent=2)
