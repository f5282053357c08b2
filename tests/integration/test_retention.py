"""Retention policies on the real influxd: created at start, each measurement in its own.

Queries here name the policies by hand (``"aggregates"."aggregates"``), not through the
layout, so that they check the layout rather than repeat it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from contract import Reading, TelemetryEvent, encode
from edge.mqtt import MqttLink
from gateway.app import prepare_storage
from gateway.influx.query import InfluxQL, quote_ident
from gateway.influx.setup import setup_influx
from gateway.influx.spill import PackedBatch, SpillBuffer
from gateway.influx.spillway import spill_key
from gateway.localstack.services import ManagedProcess, ServiceEndpoints, free_port, start_influxd
from gateway.settings import GatewaySettings, InfluxSettings, load_settings
from gateway.views import Views
from tests.integration.gateway_kit import gateway_thread
from tests.integration.streams import Published, publish_series
from tests.integration.views_kit import aggregate_line, ns, reading_line, write
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

RULES = """
[[rules]]
id = "hot"
kind = "threshold"
metric = "m0"
above = 50
clear = 40
"""

BY_POLICY = {
    "raw": {"readings", "late_readings"},
    "aggregates": {"aggregates", "alarms"},
    "deadletters": {"deadletters"},
}


def _get(influx: InfluxSettings, q: str) -> dict:  # type: ignore[type-arg]
    resp = httpx.get(f"{influx.url}/query", params={"db": influx.database, "q": q}, timeout=30)
    resp.raise_for_status()
    return resp.json()  # type: ignore[no-any-return]


def policies(influx: InfluxSettings) -> dict[str, tuple[str, bool]]:
    """name -> (duration as influxd prints it, default)."""
    doc = _get(influx, f"SHOW RETENTION POLICIES ON {quote_ident(influx.database)}")
    (series,) = doc["results"][0]["series"]
    return {row[0]: (row[1], row[4]) for row in series["values"]}


def measurements_in(influx: InfluxSettings, policy: str | None) -> set[str]:
    """The measurements holding points in ``policy`` (None: the database's default)."""
    source = "/.*/" if policy is None else f"{quote_ident(policy)}./.*/"
    doc = _get(influx, f"SELECT count(*) FROM {source}")
    return {s["name"] for r in doc["results"] for s in r.get("series", [])}


def count(influx: InfluxSettings, field: str, source: str) -> int:
    doc = _get(influx, f'SELECT count("{field}") FROM {source}')
    series = doc["results"][0].get("series") or []
    return int(series[0]["values"][0][1]) if series else 0


def test_policies_are_made_at_start_idempotently_and_follow_the_settings(
    services: ServiceEndpoints, unique: str
) -> None:
    settings = load_settings(influx={"url": services.influx_url, "database": f"r_{unique}"})
    prepare_storage(settings)
    assert policies(settings.influx) == {
        "autogen": ("0s", False),
        "raw": ("720h0m0s", True),
        "aggregates": ("9600h0m0s", False),
        "deadletters": ("336h0m0s", False),
    }
    again = setup_influx(settings.influx)
    assert [(s.name, s.status) for s in again.steps] == [
        ("ping", "ok"),
        ("database", "ok"),
        ("retention raw", "ok"),
        ("retention aggregates", "ok"),
        ("retention deadletters", "ok"),
        ("influxql", "ok"),
    ]

    changed = load_settings(
        influx={
            "url": services.influx_url,
            "database": f"r_{unique}",
            "retention": {"raw": "60d", "aggregates": "INF", "deadletters": "12h"},
        }
    )
    check = setup_influx(changed.influx, create=False)
    assert {s.name: s.status for s in check.steps if s.name.startswith("retention")} == {
        "retention raw": "differs",
        "retention aggregates": "differs",
        "retention deadletters": "differs",
    }
    assert not check.ok
    prepare_storage(changed)
    assert policies(changed.influx) == {
        "autogen": ("0s", False),
        "raw": ("1440h0m0s", True),
        "aggregates": ("0s", False),
        "deadletters": ("12h0m0s", False),  # its shard groups shortened to fit
    }
    prepare_storage(changed)  # nothing left to change
    assert setup_influx(changed.influx).ok


def _publish_workload(publisher: MqttLink, settings: GatewaySettings) -> Published:
    """30 s of 3 metrics (m0 runs hot: an alarm), a late reading, a malformed message."""
    topics = settings.topics
    published = Published()
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    publish_series(
        publisher, topics, published, site="plant", devices=["d1"], base=base, seconds=30
    )
    assert publisher.publish(topics.telemetry("plant", "d1"), b"not json").wait(10)
    return published


def _publish_straggler(publisher: MqttLink, settings: GatewaySettings, base: datetime) -> None:
    straggler = TelemetryEvent.create(
        site="plant",
        device="d1",
        sequence=1000,
        readings=[Reading(sensor="probe", metric="m1", value=1.5, time=base)],
    )
    assert publisher.publish(settings.topics.telemetry("plant", "d1"), encode(straggler)).wait(10)


def _wait_for_every_measurement(influx: InfluxSettings, readings: int) -> None:
    wait_for(
        lambda: count(influx, "value", '"raw"."readings"') >= readings,
        60,
        f"{readings} readings in raw",
    )
    wait_for(
        lambda: count(influx, "mean", '"aggregates"."aggregates"') >= 2,
        60,
        "aggregates in aggregates",
    )
    wait_for(
        lambda: count(influx, "alarm_id", '"aggregates"."alarms"') >= 1,
        60,
        "an alarm in aggregates",
    )
    wait_for(
        lambda: count(influx, "size", '"deadletters"."deadletters"') >= 1,
        60,
        "the dead letter in deadletters",
    )


@pytest.fixture
def retention_settings(gateway_settings: GatewaySettings, tmp_path: Path) -> GatewaySettings:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    return gateway_settings.model_copy(update={"rules_file": rules})


def test_every_measurement_lands_in_its_policy(
    retention_settings: GatewaySettings, publisher: MqttLink
) -> None:
    settings = retention_settings
    influx = settings.influx
    with gateway_thread(settings):
        work = _publish_workload(publisher, settings)
        _wait_for_every_measurement(influx, len(work.readings))
        base = min(e.data.readings[0].time for _, e in work.events)
        _publish_straggler(publisher, settings, base + timedelta(seconds=1, milliseconds=500))
        wait_for(
            lambda: count(influx, "value", '"raw"."late_readings"') == 1,
            30,
            "the late reading in raw",
        )
    for policy, names in BY_POLICY.items():
        assert measurements_in(influx, policy) == names, policy
    # The database's default policy is the raw one: unqualified reads see only raw data.
    assert measurements_in(influx, None) == BY_POLICY["raw"]
    assert measurements_in(influx, "autogen") == set()
    assert count(influx, "value", '"raw"."readings"') == len(work.readings) + 1


def test_retention_off_keeps_everything_in_the_default_policy(
    retention_settings: GatewaySettings, publisher: MqttLink
) -> None:
    influx = retention_settings.influx.model_copy(
        update={
            "retention": retention_settings.influx.retention.model_copy(update={"enabled": False})
        }
    )
    settings = retention_settings.model_copy(update={"influx": influx})
    with gateway_thread(settings) as gw:
        work = _publish_workload(publisher, settings)
        q = gw.query
        assert q.layout.aggregates == '"aggregates"'
        wait_for(
            lambda: (
                count(influx, "value", "readings") >= len(work.readings)
                and count(influx, "mean", "aggregates") >= 2
                and count(influx, "alarm_id", "alarms") >= 1
                and count(influx, "size", "deadletters") >= 1
            ),
            60,
            "every measurement in the default policy",
        )
    assert list(policies(influx)) == ["autogen"]
    assert measurements_in(influx, None) == {"readings", "aggregates", "alarms", "deadletters"}


# -- outages -----------------------------------------------------------------------------


@dataclass
class Influxd:
    """An influxd this test may stop and start again on the same port and data."""

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
        self.proc = None


@pytest.fixture
def influxd(tmp_path: Path) -> Iterator[Influxd]:
    server = Influxd(tmp_path / "influx", free_port())
    server.start()
    yield server
    if server.proc is not None:
        server.proc.stop()


def _spilled(settings: InfluxSettings, policy: str | None) -> int:
    """Points waiting in the spill files of one policy."""
    total = 0
    for path in settings.spill_dir.glob(f"{spill_key(settings, policy)}-*.sqlite"):
        with sqlite3.connect(path) as db:
            total += db.execute("SELECT coalesce(sum(points), 0) FROM batch").fetchone()[0]
    return total


def test_spills_of_an_outage_drain_into_their_policies(
    retention_settings: GatewaySettings, influxd: Influxd, publisher: MqttLink
) -> None:
    influx = retention_settings.influx.model_copy(
        update={
            "url": influxd.url,
            "spill_after_s": 1.0,
            "drain_backoff_max_s": 1.0,
            "timeout_s": 5.0,
        }
    )
    settings = retention_settings.model_copy(update={"influx": influx})
    with gateway_thread(settings):
        influxd.stop()
        work = _publish_workload(publisher, settings)
        # Readings, aggregates and alarms, dead letters: each waits in its policy's spill.
        for policy in ("raw", "aggregates", "deadletters"):
            wait_for(
                lambda p=policy: _spilled(influx, p) > 0,  # type: ignore[misc]
                60,
                f"points in the {policy} spill",
            )
        assert _spilled(influx, None) == 0
        influxd.start()
        _wait_for_every_measurement(influx, len(work.readings))
        wait_for(lambda: sum(_spilled(influx, p) for p in BY_POLICY) == 0, 60, "the spills drained")
    for policy, names in BY_POLICY.items():
        want = names - {"late_readings"}
        assert measurements_in(influx, policy) == want, policy
    assert count(influx, "value", '"raw"."readings"') == len(work.readings)


def test_a_spill_from_before_retention_policies_drains_into_each_policy(
    gateway_settings: GatewaySettings,
) -> None:
    settings = gateway_settings
    influx = settings.influx
    t = ns(datetime.now(UTC) - timedelta(minutes=10))
    tags = "device=old,metric=m,sensor=s,site=plant"
    lines = [
        f"readings,{tags} value=1.5 {t}",
        f"aggregates,{tags},window=1m count=1i,mean=1.5,min=1.5,max=1.5 {t}",
        f'alarms,{tags},rule=hot,severity=major,state=active alarm_id="a1",value=1.5 {t}',
        f'deadletters,reason=malformed,topic=x payload="",error="bad",size=3i {t}',
        f"late_readings,{tags} value=1.5,seq=1i {t}",
    ]
    # What an older gateway left: one spill for the database, every measurement mixed.
    legacy = SpillBuffer.claim(influx.spill_dir, spill_key(influx), max_bytes=1 << 20)
    legacy.append(PackedBatch.pack(lines))
    legacy.close()
    with gateway_thread(settings):
        wait_for(
            lambda: (
                count(influx, "size", '"deadletters"."deadletters"') == 1
                and count(influx, "alarm_id", '"aggregates"."alarms"') == 1
                and count(influx, "mean", '"aggregates"."aggregates"') == 1
                and count(influx, "value", '"raw"."late_readings"') == 1
                and count(influx, "value", '"raw"."readings"') == 1
            ),
            60,
            "the old spill in each policy",
        )
    assert _spilled(influx, None) == 0
    for policy, names in BY_POLICY.items():
        assert measurements_in(influx, policy) == names, policy


# -- reads -------------------------------------------------------------------------------


def test_long_ranges_are_read_from_aggregates_once_raw_data_expired(
    services: ServiceEndpoints, unique: str
) -> None:
    influx = InfluxSettings(url=services.influx_url, database=f"v_{unique}")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # Two days of 1-minute windows (mean 10) up to 40 minutes ago; raw readings (50) only
    # for the last 20 minutes, as if the older ones had expired.
    lines = [
        aggregate_line("lab", "d 1", "t", "temp", "1m", 10.0, now - timedelta(minutes=m))
        for m in range(40, 2 * 24 * 60)
    ]
    lines += [
        reading_line("lab", "d 1", "t", "temp", 50.0, now - timedelta(seconds=s))
        for s in range(0, 20 * 60, 10)
    ]
    write(influx, lines)
    client = InfluxQL(influx)
    try:
        views = Views(client)
        interval, points = views.readings("lab", "d 1", start=now - timedelta(days=2), end=now)
        assert interval == "15m"
        old = [p for p in points if p.time < now - timedelta(minutes=60)]
        recent = [p for p in points if p.time >= now - timedelta(minutes=30)]
        assert len(old) >= 2 * 24 * 4 - 5
        assert {p.mean for p in old} == {10.0}  # from the aggregates
        assert recent
        assert {p.mean for p in recent} == {50.0}  # from the raw readings after them
        assert {p.series for p in points} == {"t/temp"}

        # A short range is raw readings.
        interval, points = views.readings("lab", "d 1", start=now - timedelta(hours=1), end=now)
        assert interval == "10s"
        assert {p.mean for p in points} == {50.0}

        # Only aggregates stored for a range: they are what is read.
        _, points = views.readings(
            "lab", "d 1", start=now - timedelta(days=2), end=now - timedelta(hours=1)
        )
        assert points
        assert {p.mean for p in points} == {10.0}
    finally:
        client.close()
    # Everything went where the gateway would have put it.
    assert measurements_in(influx, "raw") == {"readings"}
    assert measurements_in(influx, "aggregates") == {"aggregates"}
