"""InfluxDB stopped under load and restarted: nothing written meanwhile is lost.

Each test runs its own influxd (the session's one must stay up), stops it and starts
it again on the same port over the same data directory.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contract import Reading, TelemetryEvent, encode
from edge.mqtt import MqttLink, MqttSettings
from gateway.influx.pipeline import make_pipelined_writer
from gateway.influx.query import InfluxQL
from gateway.influx.resilient import make_resilient_writer
from gateway.influx.writer import V1Writer
from gateway.localstack.services import ManagedProcess, ServiceEndpoints, free_port, start_influxd
from gateway.settings import GatewaySettings, InfluxSettings, load_settings
from tests.integration.gateway_kit import RunningGateway
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

OUTAGE_S = 60.0
LINES_PER_WRITE = 300
WRITES_PER_S = 10  # 3,000 lines/s


@dataclass
class Influxd:
    """An influxd that a test may stop and start again on the same port and data."""

    workdir: Path
    port: int
    proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc, _ = start_influxd(self.workdir, port=self.port)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.stop()


@pytest.fixture
def influxd(tmp_path: Path) -> Iterator[Influxd]:
    server = Influxd(tmp_path / "influx", free_port())
    server.start()
    yield server
    if server.proc is not None:
        server.proc.stop()


@dataclass
class Producer:
    """Writes numbered lines through a writer from a thread, at a steady pace."""

    writer: object
    base_ns: int
    written: int = 0
    slowest_write_s: float = 0.0
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def line(self, i: int) -> str:
        return f"load,src=outage value={i}.5,i={i}i {self.base_ns + i * 1000}"

    def run(self) -> None:
        try:
            next_at = time.monotonic()
            while not self.stop.is_set():
                first = self.written
                lines = [self.line(i) for i in range(first, first + LINES_PER_WRITE)]
                started = time.monotonic()
                self.writer.write(lines)  # type: ignore[attr-defined]
                self.slowest_write_s = max(self.slowest_write_s, time.monotonic() - started)
                self.written += LINES_PER_WRITE
                next_at += 1 / WRITES_PER_S
                self.stop.wait(max(0.0, next_at - time.monotonic()))  # pacing, not syncing
        except BaseException as exc:
            self.errors.append(exc)


def test_resilient_writer_loses_nothing_across_a_minute_of_outage(
    influxd: Influxd, tmp_path: Path
) -> None:
    settings = InfluxSettings(
        url=influxd.url,
        database="outage",
        spill_dir=tmp_path / "spill",
        spill_after_s=2.0,
        drain_backoff_max_s=2.0,
        timeout_s=5.0,
    )
    setup = V1Writer(settings)
    setup.ensure_database()
    setup.close()
    writer = make_resilient_writer(settings)
    now_ns = time.time_ns()
    producer = Producer(writer, base_ns=now_ns - now_ns % 10**9 - 3600 * 10**9)
    thread = threading.Thread(target=producer.run, name="producer", daemon=True)
    query = InfluxQL(settings)
    try:
        thread.start()
        wait_for(lambda: producer.written >= 3 * LINES_PER_WRITE * WRITES_PER_S, 15, "warm-up")
        assert writer.stats.spill_points == 0

        influxd.stop()
        down_at, first_down = time.monotonic(), producer.written
        wait_for(
            lambda: time.monotonic() - down_at >= OUTAGE_S and writer.stats.spill_points > 0,
            OUTAGE_S + 30,
            f"{OUTAGE_S:.0f} s of outage with a spill",
        )
        last_down = producer.written
        spilled = writer.stats.spill_points
        influxd.start()
        up_at = time.monotonic()
        # The gateway kept flowing: writes were accepted (spilled) during the outage. How
        # many depends on how busy the machine is, so only that some were is asserted.
        assert last_down > first_down

        wait_for(lambda: writer.stats.drained_points > 0, 30, "the drain to start")
        first_drained_at = time.monotonic()
        wait_for(lambda: writer.stats.spill_batches == 0, 60, "the spill to drain")
        drain_s = time.monotonic() - up_at
        pure_drain_s = time.monotonic() - first_drained_at
        wait_for(
            lambda: producer.written >= last_down + 2 * WRITES_PER_S * LINES_PER_WRITE,
            15,
            "live writes after the drain",
        )
        producer.stop.set()
        thread.join(15)
        assert not producer.errors, producer.errors
        total = producer.written
        # A live write that raced the last drained batch may have queued behind it: wait
        # for the drainer to finish rather than compare counters mid-flight.
        wait_for(
            lambda: (
                writer.stats.spill_points == 0
                and writer.stats.drained_points == writer.stats.spilled_points
            ),
            30,
            "every spilled line drained",
        )
        stats = writer.stats
    finally:
        producer.stop.set()
        writer.close()

    try:
        # Exactly the lines written, each once, with its own values.
        rows = query.query('SELECT "value", "i" FROM "load"')
        assert len(rows) == total
        assert sorted(r["i"] for r in rows) == list(range(total))
        assert all(r["value"] == r["i"] + 0.5 for r in rows)
        assert all(r["time"] == producer.base_ns + r["i"] * 1000 for r in rows)
        during = query.scalar(
            f'SELECT count("value") FROM "load" WHERE "i" >= {first_down} AND "i" < {last_down}'
        )
        assert during == last_down - first_down
    finally:
        query.close()
    assert stats.spilled_points >= spilled
    assert stats.drained_points == stats.spilled_points
    assert stats.rejected_points == 0
    assert not list((tmp_path / "spill").glob("*.sqlite"))
    print(  # the figures for the report, seen with pytest -s
        f"\noutage {OUTAGE_S:.0f} s: {last_down - first_down} lines written during it,"
        f" {stats.spilled_points} spilled; empty {drain_s:.1f} s after the restart,"
        f" {pure_drain_s:.1f} s after the first drained batch"
        f" (~{stats.drained_points / pure_drain_s:,.0f} lines/s);"
        f" slowest write() {producer.slowest_write_s:.2f} s; retries {stats.retries}"
    )


PIPELINE_OUTAGE_S = 15.0
BODY_LINES = 300
BODIES_PER_EPOCH = 5


def test_pipelined_writer_flush_means_durable_across_an_outage(
    influxd: Influxd, tmp_path: Path
) -> None:
    """Submit and flush like the points sink, through a stop and a restart of influxd.

    Every flush during the outage must leave exactly the lines submitted so far (minus
    those stored before it) in the spill on disk; at the end every line is stored once.
    """
    spill_dir = tmp_path / "spill"
    settings = InfluxSettings(
        url=influxd.url,
        database="pipeline",
        spill_dir=spill_dir,
        spill_after_s=1.0,
        drain_backoff_max_s=1.0,
        timeout_s=5.0,
    )
    setup = V1Writer(settings)
    setup.ensure_database()
    setup.close()
    writer = make_pipelined_writer(settings)  # precision u, two requests in flight
    now_us = time.time_ns() // 1000
    base_us = now_us - now_us % 10**6 - 3600 * 10**6
    written = 0

    def epoch() -> int:
        nonlocal written
        for _ in range(BODIES_PER_EPOCH):
            lines = [
                f"load,src=pipe value={i}.5,i={i}i {base_us + i}"
                for i in range(written, written + BODY_LINES)
            ]
            writer.submit(("\n".join(lines) + "\n").encode(), len(lines))
            written += BODY_LINES
        target = writer.flush(timeout=120)
        assert writer.durable_through >= target
        return target

    # A just-restarted influxd on a busy box can take a while to answer a query.
    query = InfluxQL(settings.model_copy(update={"timeout_s": 60.0}))
    try:
        for _ in range(2):
            epoch()
        stored_before = written
        assert query.scalar('SELECT count("value") FROM "load"') == stored_before

        influxd.stop()
        down_at = time.monotonic()
        epochs_down = 0
        pace = threading.Event()
        while time.monotonic() - down_at < PIPELINE_OUTAGE_S:
            epoch()
            epochs_down += 1
            pace.wait(0.5)  # a steady load of ~3,000 lines/s, not a synchronisation
            # flush returned: every line submitted is stored or durably spilled, and
            # influxd is down, so the spill on disk holds exactly the rest.
            assert _points_on_disk(spill_dir) == written - stored_before
        assert epochs_down >= 2

        influxd.start()
        wait_for(lambda: writer.stats.drained_points > 0, 30, "the drain to start")
        for _ in range(3):  # the sink keeps going while the spill drains
            epoch()
        wait_for(lambda: writer.stats.spill_batches == 0, 120, "the spill to drain")
        epoch()
        stats = writer.stats
    finally:
        writer.close()

    try:
        rows = query.query('SELECT "value", "i" FROM "load"')
        assert len(rows) == written
        assert sorted(r["i"] for r in rows) == list(range(written))
        assert all(r["value"] == r["i"] + 0.5 for r in rows)
        assert all(r["time"] == (base_us + r["i"]) * 1000 for r in rows)
    finally:
        query.close()
    assert stats.drained_points == stats.spilled_points > 0
    assert stats.rejected_points == 0
    assert not list(spill_dir.glob("*.sqlite"))
    print(
        f"\npipelined outage {PIPELINE_OUTAGE_S:.0f} s: {written} lines, {epochs_down} epochs"
        f" flushed to the spill, {stats.spilled_points} spilled and drained,"
        f" retries {stats.retries}"
    )


def _points_on_disk(spill_dir: Path) -> int:
    total = 0
    for path in spill_dir.glob("*.sqlite"):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            total += db.execute("SELECT coalesce(sum(points), 0) FROM batch").fetchone()[0]
        except sqlite3.Error:
            continue  # not created yet
        finally:
            db.close()
    return total


# End to end: telemetry over the real broker, through the running gateway, while the
# gateway's InfluxDB is down for a while.

E2E_OUTAGE_S = 8.0


@pytest.fixture
def gateway_settings(
    services: ServiceEndpoints, unique: str, influxd: Influxd, tmp_path: Path
) -> GatewaySettings:
    """The usual per-test settings, but writing to this test's own influxd."""
    return load_settings(
        topic_prefix=f"sgtest/{unique}",
        gateway_id=f"gw-{unique}",
        mqtt={
            "host": services.mqtt_host,
            "port": services.mqtt_port,
            "client_id_prefix": f"gw-{unique}",
            "share_group": f"g{unique}",
        },
        influx={
            "url": influxd.url,
            "database": f"t_{unique}",
            "spill_dir": str(tmp_path / "gw-spill"),
            "spill_after_s": 1.0,
            "drain_backoff_max_s": 1.0,
            "timeout_s": 5.0,
        },
        epoch_interval_s=0.5,
    )


def test_gateway_stores_every_reading_published_during_an_outage(
    running_gateway: RunningGateway, influxd: Influxd
) -> None:
    settings = running_gateway.settings
    topics = settings.topics
    publisher = MqttLink(MqttSettings(host=settings.mqtt.host, port=settings.mqtt.port))
    publisher.start()
    now = datetime.now(UTC).replace(microsecond=0)
    sequence = 0
    expected: dict[tuple[str, int], float] = {}

    def publish(n_events: int) -> None:
        nonlocal sequence
        tickets = []
        for _ in range(n_events):
            seq = sequence
            sequence += 1
            readings = [
                Reading(
                    sensor="probe",
                    metric=f"m{j}",
                    value=seq * 100 + j + 0.25,
                    time=now.replace(microsecond=seq),
                )
                for j in range(20)
            ]
            for j in range(20):
                expected[(f"m{j}", seq)] = seq * 100 + j + 0.25
            event = TelemetryEvent.create(
                site="plant", device="d1", sequence=seq, readings=readings
            )
            tickets.append(publisher.publish(topics.telemetry("plant", "d1"), encode(event)))
        assert all(t.wait(10) for t in tickets)

    spill_dir = settings.influx.spill_dir
    q = running_gateway.query
    try:
        publish(50)
        wait_for(
            lambda: q.scalar(f"SELECT count(value) FROM {q.layout.readings}") >= 1000, 30, "warm-up"
        )

        influxd.stop()
        down_at = time.monotonic()
        pace = threading.Event()
        while time.monotonic() - down_at < E2E_OUTAGE_S:
            publish(25)  # broker-acknowledged, then gateway-acknowledged once spilled
            pace.wait(0.2)  # a steady load of 2,500 readings/s, not a synchronisation
        # The gateway went on taking messages by spilling them, not by holding them.
        wait_for(lambda: _points_on_disk(spill_dir) > 0, 10, "readings in the gateway's spill")
        influxd.start()
        publish(25)

        total = len(expected)
        wait_for(
            lambda: q.scalar(f"SELECT count(value) FROM {q.layout.readings}") >= total,
            60,
            f"all {total} readings in InfluxDB",
        )
        rows = q.query(f"SELECT value, metric FROM {q.layout.readings}")
        assert len(rows) == total
        # Raw points carry one field (value); event seq is told apart by its microsecond.
        stored = {(r["metric"], r["time"] // 1000 % 10**6): r["value"] for r in rows}
        assert stored == expected
    finally:
        publisher.stop()
