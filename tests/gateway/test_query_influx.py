"""The views against the real influxd: results, and no InfluxQL injection."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gateway.influx.query import InfluxQL
from gateway.localstack.services import ServiceEndpoints
from gateway.settings import InfluxSettings
from gateway.views import AlarmFilter, ViewInputError, Views
from tests.integration.views_kit import aggregate_line, alarm_line, reading_line, write

pytestmark = pytest.mark.integration

HOSTILE = [
    "it's",
    'quote"d',
    "back\\slash",
    "x' OR 1=1 --",
    "x' OR device =~ .* OR device='y",
    "x\\' OR 1=1 OR device='y",
    "a\\' OR 'b'='b",
    "semi; DROP DATABASE t",
    "ünïcødé ✓",
    "sp ace,comma=eq",
]


@pytest.fixture
def influx(services: ServiceEndpoints, unique: str) -> Iterator[tuple[InfluxSettings, Views]]:
    settings = InfluxSettings(url=services.influx_url, database=f"v_{unique}")
    client = InfluxQL(settings)
    yield settings, Views(client)
    client.close()


def test_hostile_device_names_match_only_themselves(
    influx: tuple[InfluxSettings, Views],
) -> None:
    settings, views = influx
    now = datetime.now(UTC)
    lines = []
    for i, name in enumerate([*HOSTILE, "y", "victim"]):
        lines.append(reading_line("s", name, "t", "temp", float(i), now - timedelta(seconds=5)))
        lines.append(
            alarm_line(
                site="s",
                device=name,
                metric="temp",
                rule="hot",
                severity="major",
                state="active",
                alarm_id=f"id{i}",
                when=now - timedelta(seconds=5),
            )
        )
    write(settings, lines)
    for i, name in enumerate(HOSTILE):
        active = views.active_alarms(AlarmFilter(device=name))
        assert [(a.device, a.alarm_id) for a in active] == [(name, f"id{i}")], name
        history = views.alarm_history(AlarmFilter(device=name, site="s"))
        assert [a.device for a in history] == [name]
        status = views.device("s", name)
        assert status is not None
        assert status.values == {"t/temp": float(i)}
        _, points = views.readings(
            "s", name, start=now - timedelta(minutes=5), end=now, interval="raw"
        )
        assert [p.mean for p in points] == [float(i)]
    # The database is still there and whole.
    assert len(views.fleet()) == len(HOSTILE) + 2


@pytest.mark.parametrize(
    "bad", ["new\nline", "newline\n", "nul\x00", "trailing\\", "a/b", "tab\tx"]
)
def test_names_that_cannot_be_ids_are_refused(
    influx: tuple[InfluxSettings, Views], bad: str
) -> None:
    _, views = influx
    with pytest.raises(ViewInputError):
        views.active_alarms(AlarmFilter(device=bad))
    with pytest.raises(ViewInputError):
        views.device("s", bad)


def test_alarm_lifecycle_fleet_and_series(influx: tuple[InfluxSettings, Views]) -> None:
    settings, views = influx
    now = datetime.now(UTC).replace(microsecond=0)
    t0 = now - timedelta(minutes=10)
    lines = []
    for k in range(60):  # 10 minutes of readings, every 10 s, two devices
        when = t0 + timedelta(seconds=10 * k)
        lines.append(reading_line("lab", "d1", "t", "temp", 20 + k % 5, when))
        lines.append(aggregate_line("lab", "d1", "t", "temp", "10s", 20.0 + k % 5, when))
    for k in range(6):
        lines.append(
            aggregate_line("lab", "d1", "t", "temp", "1m", 22.0, t0 + timedelta(minutes=k))
        )
    lines.append(reading_line("lab", "d2", "t", "temp", 5, now - timedelta(minutes=9)))
    a = dict(site="lab", device="d1", metric="t/temp", rule="hot")
    lines += [
        alarm_line(**a, severity="major", state="active", alarm_id="A1", when=t0),
        alarm_line(
            **a, severity="major", state="cleared", alarm_id="A1", when=t0 + timedelta(minutes=1)
        ),
        alarm_line(
            **a, severity="critical", state="active", alarm_id="A2", when=t0 + timedelta(minutes=2)
        ),
        alarm_line(
            **a,
            severity="critical",
            state="acknowledged",
            alarm_id="A2",
            when=t0 + timedelta(minutes=3),
        ),
        alarm_line(
            site="lab",
            device="d2",
            metric="*",
            rule="deadman",
            severity="warning",
            state="active",
            alarm_id="B1",
            when=t0 + timedelta(minutes=4),
        ),
    ]
    write(settings, lines)

    active = views.active_alarms()
    assert [(r.alarm_id, r.state) for r in active] == [("A2", "acknowledged"), ("B1", "active")]
    assert [r.alarm_id for r in views.active_alarms(AlarmFilter(severity="warning"))] == ["B1"]
    assert [r.alarm_id for r in views.active_alarms(AlarmFilter(state="active"))] == ["B1"]

    history = views.alarm_history(AlarmFilter(device="d1"))
    assert [(r.alarm_id, r.state) for r in history] == [
        ("A2", "acknowledged"),
        ("A2", "active"),
        ("A1", "cleared"),
        ("A1", "active"),
    ]
    assert (
        len(
            views.alarm_history(
                AlarmFilter(rule="hot"),
                start=t0 + timedelta(seconds=30),
                end=t0 + timedelta(seconds=150),
            )
        )
        == 2
    )
    assert [r.alarm_id for r in views.alarm_history(AlarmFilter(state="cleared"))] == ["A1"]

    fleet = {d.device: d for d in views.fleet()}
    assert fleet["d1"].online
    assert not fleet["d2"].online
    assert fleet["d1"].values == {"t/temp": 20.0 + 59 % 5}
    assert views.fleet(site="nowhere") == []

    interval, points = views.readings("lab", "d1", start=t0, end=now)
    assert interval == "10s"
    assert len(points) == 60
    stored = ("10s", "1m")  # the windows this test wrote (the gateway's default is 1m)
    interval, aggs = views.aggregates("lab", "d1", start=t0, end=now, windows=stored)
    assert interval == "10s"
    assert len(aggs) == 60
    interval, aggs = views.aggregates(
        "lab", "d1", start=now - timedelta(days=1), end=now, windows=stored
    )
    assert interval == "5m"  # reads the stored 1m windows, bucketed by 5 minutes
    assert {p.mean for p in aggs} == {22.0}
