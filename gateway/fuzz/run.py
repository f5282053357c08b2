"""Run ``sensorgate fuzz``: a seeded hostile corpus through a real broker and gateway.

1. Fresh mosquitto and influxd (:class:`~gateway.localstack.services.LocalServices`), database
   ``fuzz``; the gateway as its own process (``python -m gateway.cli gateway run``,
   default rules, recovery on), with a 16 KiB payload limit so oversize messages are
   cheap; a subscriber on the dead-letter topic.
2. The corpus (:mod:`gateway.fuzz.corpus`) is published at QoS 1 and every PUBACK
   awaited.
3. The gateway's ``/metrics`` are polled until its counters account for every message
   (accepted, duplicates, dead letters by reason) or stop moving; then InfluxDB is
   polled until it holds every accepted reading.
4. The report compares each count with the generator's expectation, and says whether
   the gateway is still alive with ``sensorgate_shard_errors_total`` at 0.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from contract import TopicScheme
from contract.errors import SensorGateError, ServiceError
from edge.mqtt import MqttLink, MqttSettings
from gateway.bench.influxd import Influxd
from gateway.bench.peers import start_gateway, wait_until
from gateway.bench.rounds import now_utc
from gateway.fuzz.corpus import Message, Tally, generate
from gateway.localstack.services import LocalServices, ServiceEndpoints, free_port
from gateway.settings import GatewaySettings, load_settings

if TYPE_CHECKING:
    from paho.mqtt.client import MQTTMessage

__all__ = ["FuzzOptions", "FuzzReport", "GatewayCounts", "run_fuzz", "scrape_counts"]

Progress = Callable[[str], None]
DATABASE = "fuzz"
MAX_PAYLOAD = 16_384


@dataclass(frozen=True, slots=True)
class FuzzOptions:
    """What to run."""

    messages: int = 100_000
    seed: int = 1
    devices: int = 200
    timeout_s: float = 600.0
    """Longest wait for the gateway to account for everything."""
    keep: bool = False
    """Keep the services' folder (logs) after the run."""


@dataclass(slots=True)
class GatewayCounts:
    """What the gateway's ``/metrics`` say."""

    accepted: int = 0
    readings: int = 0
    duplicate_readings: int = 0
    deadletters: dict[str, int] = field(default_factory=dict)
    shard_errors: int = 0
    points_written: int = 0

    @property
    def deadletters_total(self) -> int:
        """Dead letters of every reason."""
        return sum(self.deadletters.values())


def scrape_counts(port: int) -> GatewayCounts:
    """Read the gateway's accounting counters from ``/metrics``."""
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError as exc:
        raise ServiceError(f"the gateway did not answer {url}: {exc}") from exc
    out = GatewayCounts()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            value = int(s.value)
            if s.name == "sensorgate_messages_in_total":
                out.accepted = value
            elif s.name == "sensorgate_readings_in_total":
                out.readings = value
            elif s.name == "sensorgate_duplicate_readings_total":
                out.duplicate_readings = value
            elif s.name == "sensorgate_deadletters_total":
                out.deadletters[s.labels["reason"]] = value
            elif s.name == "sensorgate_shard_errors_total":
                out.shard_errors = value
            elif s.name == "sensorgate_points_written_total" and (
                s.labels.get("measurement") == "readings"
            ):
                out.points_written = value
    return out


@dataclass
class FuzzReport:
    """The figures of one run (``--json`` prints this)."""

    command: str
    seed: int
    started_at: str
    published: int = 0
    acknowledged: int = 0
    expected: dict[str, Any] = field(default_factory=dict)
    gateway: dict[str, Any] = field(default_factory=dict)
    stored_readings: int = 0
    deadletters_on_mqtt: dict[str, int] = field(default_factory=dict)
    by_category: dict[str, int] = field(default_factory=dict)
    reasons_by_category: dict[str, dict[str, int]] = field(default_factory=dict)
    gateway_alive: bool = False
    crashes: int = 0
    unaccounted: int = 0
    mismatches: list[str] = field(default_factory=list)
    publish_s: float = 0.0
    drain_s: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """No crash, nothing unaccounted, every count as expected."""
        return (
            self.error is None and not self.crashes and not self.unaccounted and not self.mismatches
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self) | {"ok": self.ok}


class _Publisher:
    """A QoS 1 publisher that counts PUBACKs."""

    def __init__(self, host: str, port: int) -> None:
        self.acked = 0
        self._lock = threading.Lock()
        settings = MqttSettings(
            host=host, port=port, client_id=f"fuzz-{free_port()}", clean_session=True
        )
        self.link = MqttLink(settings, on_publish=self._on_publish)
        # At most 500 unacknowledged at the broker, the rest queued in paho (the link
        # leaves both unlimited by default); set before the connection, as paho requires.
        self.link.client.max_inflight_messages_set(500)
        self.link.start(fail_fast=True)

    def _on_publish(self, _mid: int) -> None:
        with self._lock:
            self.acked += 1

    def publish(self, msg: Message) -> None:
        # paho's topic checks refuse what a device could never send as a topic anyway.
        self.link.publish(msg.topic, msg.payload, qos=1)

    def stop(self) -> None:
        self.link.stop()


class _DeadLetterTap:
    """Counts dead letters by reason as the gateway publishes them."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.reasons: Counter[str] = Counter()
        self.subscribed = threading.Event()
        self._topic = topic
        self.link = MqttLink(
            MqttSettings(host=host, port=port),
            on_connect=lambda link: link.subscribe(topic, qos=1),
            on_subscribed=lambda _filters: self.subscribed.set(),
            on_message=self._on_message,
        )
        self.link.start(fail_fast=True)

    def _on_message(self, msg: MQTTMessage) -> None:
        try:
            reason = json.loads(msg.payload)["data"]["reason"]
        except (ValueError, KeyError, TypeError):
            reason = "?"
        self.reasons[str(reason)] += 1

    def stop(self) -> None:
        self.link.stop()


def run_fuzz(options: FuzzOptions, *, command: str, progress: Progress) -> FuzzReport:
    """Run the whole fuzz round; failures are in the report, not raised."""
    report = FuzzReport(command=command, seed=options.seed, started_at=now_utc())
    workdir = Path(tempfile.mkdtemp(prefix="sensorgate-fuzz-"))
    services = LocalServices(workdir=workdir, keep_data=options.keep)
    gateway = None
    tap = None
    influx: Influxd | None = None
    try:
        progress(f"starting mosquitto and influxd in {workdir}")
        ep = services.start()
        influx = Influxd(ep.influx_url, DATABASE)
        influx.create_database()
        topics = TopicScheme()
        progress("starting the gateway (recovery on, default rules)")
        gateway = start_gateway("gateway", _gateway_settings(ep, workdir), workdir)
        tap = _DeadLetterTap(ep.mqtt_host, ep.mqtt_port, topics.deadletter)
        if not tap.subscribed.wait(30):
            raise ServiceError("the dead-letter subscriber did not subscribe within 30 s")
        port = gateway.metrics_port
        assert port is not None
        tally = _publish(options, ep.mqtt_host, ep.mqtt_port, topics, report, progress)
        _expectations(report, tally)
        t0 = time.monotonic()
        _await_counts(port, tally, options.timeout_s, progress)
        stored = _await_stored(influx, tally.readings, options.timeout_s, progress)
        wait_until(lambda: sum(tap.reasons.values()) >= sum(tally.deadletters.values()), 30, 0.5)
        report.drain_s = round(time.monotonic() - t0, 1)
        _account(report, scrape_counts(port), tally, stored, dict(tap.reasons))
        report.gateway_alive = gateway.proc.alive()
        if not report.gateway_alive:
            report.crashes += 1  # a dead gateway is a crash too
    except (SensorGateError, OSError) as exc:
        report.error = str(exc)
    finally:
        if influx is not None:
            influx.close()
        if tap is not None:
            tap.stop()
        if gateway is not None:
            if not gateway.proc.alive() and report.error is None:
                report.error = f"the gateway died:\n{gateway.proc.log_tail()}"
            gateway.stop()
        services.stop()
        if not options.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return report


def _gateway_settings(ep: ServiceEndpoints, workdir: Path) -> GatewaySettings:
    """Return the fuzzed gateway's settings: a 16 KiB payload limit, recovery on."""
    return load_settings(
        mqtt={
            "host": ep.mqtt_host,
            "port": ep.mqtt_port,
            "max_packet_bytes": MAX_PAYLOAD + 65_536,
        },
        influx={
            "url": ep.influx_url,
            "database": DATABASE,
            "spill_dir": str(workdir / "spill"),
        },
        ingest={"max_payload_bytes": MAX_PAYLOAD},
        metrics_port=free_port(),
        recovery_dir=workdir / "recovery",
    )


def _expectations(report: FuzzReport, tally: Tally) -> None:
    """Put what the corpus expects into the report."""
    report.expected = {
        "accepted": tally.accepted,
        "readings": tally.readings,
        "duplicates": tally.duplicates,
        "duplicate_readings": tally.duplicate_readings,
        "deadletters": dict(sorted(tally.deadletters.items())),
    }
    report.by_category = dict(sorted(tally.by_category.items()))
    report.reasons_by_category = {k: dict(v) for k, v in sorted(tally.reasons_by_category.items())}


def _account(
    report: FuzzReport, counts: GatewayCounts, tally: Tally, stored: int, on_mqtt: dict[str, int]
) -> None:
    """Put what the gateway counted beside the expectations; count what is unaccounted."""
    report.gateway = asdict(counts)
    report.stored_readings = stored
    report.deadletters_on_mqtt = dict(sorted(on_mqtt.items()))
    report.crashes = counts.shard_errors
    dup_messages = tally.duplicates if counts.duplicate_readings == tally.duplicate_readings else 0
    received = counts.accepted + counts.deadletters_total + dup_messages
    report.unaccounted = max(report.published - received, 0)
    report.mismatches = _mismatches(tally, counts, stored, report.deadletters_on_mqtt)


def _publish(
    options: FuzzOptions,
    host: str,
    port: int,
    topics: TopicScheme,
    report: FuzzReport,
    progress: Progress,
) -> Tally:
    tally = Tally()
    start = datetime.now(UTC) - timedelta(seconds=60)
    publisher = _Publisher(host, port)
    t0 = time.monotonic()
    try:
        for msg in generate(
            options.messages,
            seed=options.seed,
            start=start,
            topics=topics,
            devices=options.devices,
            max_payload_bytes=MAX_PAYLOAD,
        ):
            publisher.publish(msg)
            tally.add(msg)
            while tally.messages - publisher.acked > 5_000:  # bound what waits in memory
                time.sleep(0.005)
            if tally.messages % 20_000 == 0:
                progress(f"published {tally.messages:,} of {options.messages:,}")
        report.published = tally.messages
        if not wait_until(lambda: publisher.acked >= tally.messages, 120, 0.1):
            progress(f"only {publisher.acked:,} of {tally.messages:,} PUBACKs after 120 s")
        report.acknowledged = publisher.acked
    finally:
        publisher.stop()
    report.publish_s = round(time.monotonic() - t0, 1)
    progress(f"published {report.published:,} messages in {report.publish_s} s (all PUBACKed)")
    return tally


def _settled(
    read: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float, still_s: float = 20.0
) -> Any:
    """Poll ``read`` until ``done`` holds, or it stops changing for ``still_s``."""
    deadline = time.monotonic() + timeout_s
    last, last_change = None, time.monotonic()
    while True:
        value = read()
        if done(value):
            return value
        if value != last:
            last, last_change = value, time.monotonic()
        if time.monotonic() - last_change > still_s or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def _await_counts(port: int, tally: Tally, timeout_s: float, progress: Progress) -> GatewayCounts:
    want = tally.accepted + sum(tally.deadletters.values())
    last_print = [0.0]

    def read() -> tuple[int, int]:
        counts = scrape_counts(port)
        seen = counts.accepted + counts.deadletters_total
        if time.monotonic() - last_print[0] > 10:
            last_print[0] = time.monotonic()
            progress(f"gateway accounted for {seen:,} of {want:,} accepted + dead letters")
        return seen, counts.duplicate_readings

    _settled(read, lambda v: v[0] >= want and v[1] >= tally.duplicate_readings, timeout_s)
    return scrape_counts(port)


def _await_stored(influx: Influxd, readings: int, timeout_s: float, progress: Progress) -> int:
    stored = _settled(influx.count_readings, lambda n: n >= readings, timeout_s)
    progress(f"InfluxDB holds {stored:,} readings (expected {readings:,})")
    return int(stored)


def _mismatches(
    tally: Tally, counts: GatewayCounts, stored: int, on_mqtt: dict[str, int]
) -> list[str]:
    out = []
    pairs = [
        ("accepted messages", counts.accepted, tally.accepted),
        ("readings in", counts.readings, tally.readings),
        ("duplicate readings", counts.duplicate_readings, tally.duplicate_readings),
        ("readings stored in InfluxDB", stored, tally.readings),
    ]
    for reason in sorted(set(tally.deadletters) | set(counts.deadletters)):
        pairs.append(
            (f"dead letters {reason}", counts.deadletters.get(reason, 0), tally.deadletters[reason])
        )
        pairs.append(
            (f"dead letters {reason} on MQTT", on_mqtt.get(reason, 0), tally.deadletters[reason])
        )
    for what, got, want in pairs:
        if got != want:
            out.append(f"{what}: {got:,} (expected {want:,})")
    return out
