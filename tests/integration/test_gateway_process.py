"""The gateway as its own process: cluster, crash recovery, idle cost, metrics and health."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from contract import Reading, TelemetryEvent, encode
from edge.mqtt import MqttLink
from gateway.influx.query import InfluxQL
from gateway.localstack.services import ManagedProcess, free_port, start_influxd
from gateway.runtime.cluster import free_listen_ports
from gateway.settings import GatewaySettings
from tests.integration.gateway_kit import spawn_gateway, wait_ready
from tests.integration.streams import (
    Published,
    assert_aggregates_equal,
    close_windows,
    in_any_order,
    past_minute,
    publish_closers,
    publish_series,
    stored_aggregates,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def proc_settings(gateway_settings: GatewaySettings) -> GatewaySettings:
    return gateway_settings.model_copy(update={"metrics_port": free_port()})


def test_two_processes_give_the_aggregates_computed_from_the_data(
    proc_settings: GatewaySettings, publisher: MqttLink, tmp_path: Path
) -> None:
    # Two processes: metrics ports base and base+1 must both be free.
    base = free_port()
    while not _port_free(base + 1):
        base = free_port()
    settings = in_any_order(
        proc_settings.model_copy(
            update={
                "metrics_port": base,
                "mqtt": proc_settings.mqtt.model_copy(update={"partitions": 2}),
            }
        )
    )
    # Below the ephemeral range: a free_port() pick can be taken by an outgoing
    # connection before the process binds it (gateway.runtime.cluster.free_listen_ports).
    addresses = ";".join(f"127.0.0.1:{port}" for port in free_listen_ports(2))
    procs = [
        spawn_gateway(settings, tmp_path, f"gw{i}", "-i", str(i), "-a", addresses) for i in range(2)
    ]
    try:
        for i, proc in enumerate(procs):
            wait_ready(proc, base + i)
        published = Published()
        start = past_minute()
        devices = [f"p{i}" for i in range(10)]
        publish_series(
            publisher,
            settings.topics,
            published,
            site="plant",
            devices=devices,
            base=start,
            seconds=30,
        )
        expected = published.expected_aggregates(10)
        q = InfluxQL(settings.influx)
        close_windows(publisher, settings, q, published, devices, start + timedelta(seconds=31))
        wait_for(
            lambda: (
                q.scalar(f"SELECT count(mean) FROM {q.layout.aggregates} WHERE \"window\" = '10s'")
                >= len(expected)
            ),
            60,
            "the aggregates of both processes",
        )
        assert q.scalar(f"SELECT count(value) FROM {q.layout.late_readings}") == 0
        assert_aggregates_equal(
            stored_aggregates(q.query(f"SELECT * FROM {q.layout.aggregates}"), "10s"), expected
        )
        # Both processes did part of the work (the shared subscription split the load).
        for i in range(2):
            text = httpx.get(f"http://127.0.0.1:{base + i}/metrics").text
            assert _metric(text, "sensorgate_messages_in_total") > 0, f"process {i} idle"
        q.close()
    finally:
        for proc in procs:
            proc.stop()


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


class _Load:
    """Publishes telemetry with wall-clock event times from a thread."""

    def __init__(self, link: MqttLink, settings: GatewaySettings, devices: int) -> None:
        self.link = link
        self.topics = settings.topics
        self.devices = [f"k{i}" for i in range(devices)]
        self.published = Published()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.tickets: list = []  # type: ignore[type-arg]

    def _run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            now = datetime.now(UTC)
            for d, device in enumerate(self.devices):
                event = TelemetryEvent.create(
                    site="plant",
                    device=device,
                    sequence=seq,
                    readings=[
                        Reading(sensor="probe", metric=f"m{j}", value=seq * 10.0 + d + j, time=now)
                        for j in range(5)
                    ],
                )
                for r in event.data.readings:
                    key = (
                        device,
                        r.metric,
                        int(r.time.timestamp()) * 1_000_000 + r.time.microsecond,
                    )
                    self.published.readings[key] = r.value  # type: ignore[assignment]
                self.tickets.append(
                    self.link.publish(self.topics.telemetry("plant", device), encode(event))
                )
            seq += 1
            self.stop.wait(0.05)

    def __enter__(self) -> _Load:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        assert all(t.wait(30) for t in self.tickets)


def test_sigkill_under_load_loses_no_reading(
    proc_settings: GatewaySettings, publisher: MqttLink, tmp_path: Path
) -> None:
    # The subject is recovery, not stall tolerance: a gateway that cannot run for longer
    # than the quiet period (stream.quiet_s, 2 s here by default) takes that as the fleet
    # going silent and closes windows by the wall clock (docs/gateway.md, "Event time"),
    # and a 2-core machine under load stalls it that long. 30 s of quiet keeps such a
    # stall from moving windows; every reading must still land in its window.
    settings = proc_settings.model_copy(
        update={
            "recovery_dir": str(tmp_path / "recovery"),
            "stream": proc_settings.stream.model_copy(update={"quiet_s": 30.0}),
        }
    )
    port = settings.metrics_port
    q = InfluxQL(settings.influx)

    def stored() -> int:
        return int(q.scalar(f"SELECT count(value) FROM {q.layout.readings}"))

    gw = spawn_gateway(settings, tmp_path, "gw-before")
    try:
        wait_ready(gw, port)
        with _Load(publisher, settings, devices=10) as load:

            def published() -> int:
                return len(load.published.readings)

            # The kill lands while the gateway works: readings stored, more in flight.
            wait_for(lambda: stored() >= 1000 and published() >= 3000, 60, "the load")
            gw.proc.kill()  # SIGKILL: no chance to flush or acknowledge anything
            gw.proc.wait()
            gw.stop()
            killed_at = published()
            # The broker keeps queueing for the gateway's persistent session meanwhile.
            wait_for(lambda: published() >= killed_at + 1000, 60, "readings sent while down")
            gw = spawn_gateway(settings, tmp_path, "gw-after")
            wait_ready(gw, port)
            restarted_at = published()
            # The new gateway catches up with the backlog while the load goes on.
            wait_for(
                lambda: stored() >= killed_at and published() >= restarted_at + 2000,
                60,
                "the restarted gateway catching up under load",
            )
        total = published()
        wait_for(lambda: stored() >= total, 60, f"all {total} readings stored")
        rows = q.query(f"SELECT value, device, metric FROM {q.layout.readings}")
        kept = {(r["device"], r["metric"], r["time"] // 1000): r["value"] for r in rows}
        assert kept == load.published.readings
        # Windows closing after the restart hold every reading, none twice.
        expected = load.published.expected_aggregates(10)
        newest = max(k[2] for k in expected)
        complete = {k: v for k, v in expected.items() if k[2] + 10_000_000 <= newest}
        # Close the last complete window by event time: one more reading per device dated
        # past its end plus the lateness. Left to the quiet period instead, it closes only
        # after about 2 x quiet_s (60 s) of silence when the load happened to stop less
        # than the lateness after the window's end (eventclock.FleetClock).
        lateness_us = int(settings.stream.allowed_lateness_s * 1_000_000)
        close_us = newest + lateness_us + 1_000_000
        wait_for(lambda: time.time_ns() // 1000 >= close_us, 20, "the wall clock past the window")
        publish_closers(
            publisher, settings.topics, site="plant", devices=load.devices, at=datetime.now(UTC)
        )
        wait_for(
            lambda: (
                q.scalar(f"SELECT count(mean) FROM {q.layout.aggregates} WHERE \"window\" = '10s'")
                >= len(complete)
            ),
            60,
            "the aggregates",
        )
        got = stored_aggregates(q.query(f"SELECT * FROM {q.layout.aggregates}"), "10s")
        assert_aggregates_equal({k: got[k] for k in complete if k in got}, complete)
    finally:
        gw.stop()
        q.close()


@pytest.fixture
def own_influx(tmp_path: Path) -> Iterator[tuple[ManagedProcess, int]]:
    proc, port = start_influxd(tmp_path / "own")
    yield proc, port
    proc.stop()


def test_metrics_and_health_follow_influxdb(
    proc_settings: GatewaySettings,
    own_influx: tuple[ManagedProcess, int],
    tmp_path: Path,
    publisher: MqttLink,
) -> None:
    influx_proc, influx_port = own_influx
    settings = proc_settings.model_copy(
        update={
            "influx": proc_settings.influx.model_copy(
                update={"url": f"http://127.0.0.1:{influx_port}"}
            )
        }
    )
    port = settings.metrics_port
    gw = spawn_gateway(settings, tmp_path, "gw-health")
    try:
        wait_ready(gw, port)
        published = Published()
        publish_series(
            publisher,
            settings.topics,
            published,
            site="plant",
            devices=["h1"],
            base=datetime.now(UTC).replace(microsecond=0),
            seconds=5,
        )
        assert publisher.publish(settings.topics.telemetry("plant", "h1"), b"junk").wait(10)
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(
            lambda: _metric(httpx.get(url).text, "sensorgate_readings_in_total") >= 15,
            30,
            "readings counted",
        )
        text = httpx.get(url).text
        wait_for(
            lambda: 'sensorgate_deadletters_total{reason="not_json"} 1.0' in httpx.get(url).text,
            30,
            "the dead letter counted",
        )
        for name in (
            "sensorgate_points_written_total",
            "sensorgate_end_to_end_lag_seconds_bucket",
            "sensorgate_duplicate_readings_total",
            "sensorgate_late_readings_total",
            "sensorgate_spill_bytes",
            "sensorgate_write_retries_total",
        ):
            assert name in text, name
        health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
        assert health["ready"]
        assert health["broker"]
        assert health["influxdb"]
        influx_proc.stop()
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 503,
            15,
            "/healthz to report InfluxDB down",
        )
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["influxdb"] is False
    finally:
        gw.stop()


def _spawn_like_a_background_job(
    settings: GatewaySettings, workdir: Path, name: str
) -> ManagedProcess:
    """Start the gateway as ``cmd &`` in a script does: with SIGINT ignored."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the child
    try:
        return spawn_gateway(settings, workdir, name)
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_graceful_stop_under_load_acknowledges_everything_it_stored(
    signame: str, proc_settings: GatewaySettings, publisher: MqttLink, tmp_path: Path
) -> None:
    import signal

    settings = proc_settings.model_copy(update={"recovery_dir": str(tmp_path / "recovery")})
    port = settings.metrics_port
    q = InfluxQL(settings.influx)
    gw = _spawn_like_a_background_job(settings, tmp_path, "gw-first")
    try:
        wait_ready(gw, port)
        with _Load(publisher, settings, devices=10) as load:
            wait_for(
                lambda: q.scalar(f"SELECT count(value) FROM {q.layout.readings}") >= 500,
                60,
                "work under way",
            )
            os.kill(gw.pid, getattr(signal, signame))
            # A generous bound, not a timing assertion: `sensorgate bench-stop` measures it.
            assert gw.proc.wait(timeout=120) == 0, gw.log_tail()
        gw.stop()
        gw = spawn_gateway(settings, tmp_path, "gw-second")
        wait_ready(gw, port)
        total = len(load.published.readings)
        wait_for(
            lambda: q.scalar(f"SELECT count(value) FROM {q.layout.readings}") >= total,
            60,
            f"all {total} readings stored",
        )
        rows = q.query(f"SELECT value, device, metric FROM {q.layout.readings}")
        stored = {(r["device"], r["metric"], r["time"] // 1000): r["value"] for r in rows}
        assert stored == load.published.readings
        # The first gateway acknowledged every message whose readings it stored (and
        # whose dedupe state it committed), so the broker sent none of them again: the
        # second one, resuming that state, saw no duplicate.
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert _metric(text, "sensorgate_duplicate_readings_total") == 0
    finally:
        gw.stop()
        q.close()
