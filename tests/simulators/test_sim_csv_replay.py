"""CSV replay: detection, line-numbered errors, and SKAB through the real broker."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sim_helpers import Collector, mqtt_settings

from contract import TelemetryEvent, TopicScheme, decode
from contract.errors import ConfigError
from simulators.csv_replay import CsvRowsError, read_csv, replay_csv
from simulators.fleet import wait_until
from simulators.links import LinkPool, MemoryPublisher

REPO = Path(__file__).resolve().parents[2]
SKAB = REPO.parent / "shared" / "datasets" / "skab" / "data"
VALVE = SKAB / "valve1" / "0.csv"


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_and_iso_without_zone_are_detected(tmp_path, delimiter):
    rows = ["timestamp,a,b", "2024-05-01 10:00:00,1.5,2", "2024-05-01 10:00:01,1.75,-3e-2"]
    path = write(tmp_path, "\n".join(r.replace(",", delimiter) for r in rows) + "\n")
    table = read_csv(path)
    assert table.delimiter == delimiter
    assert (table.time_column, table.time_format, table.timezone) == ("timestamp", "iso", "UTC")
    assert table.metrics == ("a", "b")
    assert [(r.line, r.time, r.values) for r in table.rows] == [
        (2, datetime(2024, 5, 1, 10, tzinfo=UTC), {"a": 1.5, "b": 2.0}),
        (3, datetime(2024, 5, 1, 10, 0, 1, tzinfo=UTC), {"a": 1.75, "b": -0.03}),
    ]


def test_iso_with_zone_epoch_seconds_and_milliseconds(tmp_path):
    zoned = read_csv(
        write(tmp_path, "time,v\n2024-05-01T12:00:00+02:00,1\n2024-05-01T10:00:01Z,2\n")
    )
    assert [r.time for r in zoned.rows] == [
        datetime(2024, 5, 1, 10, tzinfo=UTC),
        datetime(2024, 5, 1, 10, 0, 1, tzinfo=UTC),
    ]
    secs = read_csv(write(tmp_path, "ts,v\n1714557600,1\n1714557600.5,2\n", "s.csv"))
    assert secs.time_format == "epoch_s"
    assert secs.rows[1].time == datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)
    millis = read_csv(write(tmp_path, "ts,v\n1714557600000,1\n1714557600250,2\n", "ms.csv"))
    assert millis.time_format == "epoch_ms"
    assert millis.rows[1].time == datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC)


def test_naive_times_take_the_given_zone(tmp_path):
    table = read_csv(write(tmp_path, "datetime;x\n2020-03-09 10:14:33;1\n"), tz="Europe/Moscow")
    assert table.rows[0].time == datetime(2020, 3, 9, 7, 14, 33, tzinfo=UTC)
    with pytest.raises(ConfigError) as info:
        read_csv(write(tmp_path, "t,x\n2020-01-01,1\n", "z.csv"), tz="Mars/Olympus")
    assert info.value.field == "tz"


def test_a_time_column_found_by_its_values_and_a_strptime_format(tmp_path):
    table = read_csv(write(tmp_path, "when,v\n2024-01-02T03:04:05,7\n"))
    assert table.time_column == "when"
    custom = read_csv(
        write(tmp_path, "stamp,v\n02/01/2024 03:04:05,7\n", "c.csv"),
        time_column="stamp",
        time_format="%d/%m/%Y %H:%M:%S",
    )
    assert custom.rows[0].time == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    with pytest.raises(ConfigError) as info:
        read_csv(write(tmp_path, "a,b\n1,2\n", "n.csv"))
    assert info.value.field == "time_column"


def test_bad_rows_are_reported_with_line_numbers_never_skipped_silently(tmp_path):
    text = (
        "time,a,b\n"
        "2024-01-01T00:00:00Z,1,2\n"
        "not a time,1,2\n"  # line 3
        "2024-01-01T00:00:02Z,x,2\n"  # line 4
        "\n"  # a blank line is not a row
        "2024-01-01T00:00:03Z,1\n"  # line 6: too few cells
        "2024-01-01T00:00:04Z,nan,2\n"  # line 7: not finite
        "2024-01-01T00:00:05Z,,\n"  # line 8: nothing
        "2024-01-01T00:00:06Z,,5\n"  # line 9: fine, one empty cell
    )
    table = read_csv(write(tmp_path, text))
    assert [e.line for e in table.errors] == [3, 4, 6, 7, 8]
    assert "column 'a'" in table.errors[1].reason
    assert [r.line for r in table.rows] == [2, 9]
    assert table.rows[1].values == {"b": 5.0}
    assert table.empty_cells == 3
    publisher = MemoryPublisher()
    with pytest.raises(CsvRowsError) as info:
        replay_csv(table, publisher, TopicScheme(), site="s", device="d")
    assert "line 3" in str(info.value)
    assert [e.line for e in info.value.errors] == [3, 4, 6, 7, 8]
    assert publisher.messages == []  # refused before publishing anything
    report = replay_csv(table, publisher, TopicScheme(), site="s", device="d", skip_bad_rows=True)
    assert (report.events, report.bad_rows) == (2, 5)
    assert [e.line for e in report.errors] == [3, 4, 6, 7, 8]


def test_excluded_and_selected_columns(tmp_path):
    path = write(tmp_path, "time,a,b,anomaly\n2024-01-01T00:00:00Z,1,2,0\n")
    assert read_csv(path, exclude=["anomaly", "changepoint"]).metrics == ("a", "b")
    assert read_csv(path, exclude=["anomaly", "changepoint"]).unknown_excluded == ("changepoint",)
    assert read_csv(path, columns=["b"]).metrics == ("b",)
    with pytest.raises(ConfigError, match="not columns"):
        read_csv(path, columns=["zz"])
    with pytest.raises(ConfigError, match="time_column"):
        read_csv(path, time_column="nope")


def test_accelerated_replay_keeps_the_gaps_between_rows(tmp_path):
    base = datetime(2024, 1, 1, tzinfo=UTC)
    lines = ["time,v"] + [f"{(base + timedelta(seconds=10 * i)).isoformat()},{i}" for i in range(4)]
    table = read_csv(write(tmp_path, "\n".join(lines) + "\n"))
    report = replay_csv(table, MemoryPublisher(), TopicScheme(), site="s", device="d", speed=100.0)
    # 30 s of data at x100 takes at least 0.3 s of wall time (how much more depends on
    # the machine: not asserted)
    assert report.wall_s >= 0.28


def skab_rows(path):
    with path.open() as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    return rows


def test_skab_file_reads_as_is():
    table = read_csv(VALVE, exclude=["anomaly", "changepoint"])
    assert table.delimiter == ";"
    assert table.time_column == "datetime"
    assert table.errors == []
    assert len(table.rows) == len(skab_rows(VALVE)) == 1147
    assert "anomaly" not in table.metrics
    assert len(table.metrics) == 8


@pytest.mark.integration
def test_skab_replay_through_the_broker_delivers_exactly_its_rows(services, topics, unique):
    table = read_csv(VALVE, exclude=["anomaly", "changepoint"])
    expected = skab_rows(VALVE)
    topic = topics.telemetry("skab", "valve1-0")
    with Collector(services, topic, f"sub-{unique}") as sub:
        pool = LinkPool(mqtt_settings(services), size=1, client_prefix=f"pub-{unique}")
        pool.start()
        try:
            report = replay_csv(table, pool, topics, site="skab", device="valve1-0", speed=None)
            assert pool.wait_acknowledged(30)
        finally:
            pool.stop()
        assert wait_until(lambda: sub.count() >= len(expected), 30), sub.count()
    assert report.events == pool.acknowledged == len(expected)
    events = [decode(payload) for _topic, payload in sub.messages]
    assert all(isinstance(e, TelemetryEvent) for e in events)
    events.sort(key=lambda e: e.data.sequence)
    assert len(events) == len(expected)
    for event, row in zip(events, expected, strict=True):
        when = datetime.fromisoformat(row["datetime"]).replace(tzinfo=UTC)
        assert event.time == when
        got = {r.metric: (r.value, r.time) for r in event.data.readings}
        want = {
            k: (float(v), when)
            for k, v in row.items()
            if k not in ("datetime", "anomaly", "changepoint")
        }
        assert got == want


def test_rebase_shifts_every_timestamp_by_the_same_amount(tmp_path):
    table = read_csv(write(tmp_path, "time,v\n2020-01-01T00:00:00Z,1\n2020-01-01T00:00:07Z,2\n"))
    publisher = MemoryPublisher()
    target = datetime(2026, 5, 1, 12, tzinfo=UTC)
    report = replay_csv(table, publisher, TopicScheme(), site="s", device="d", rebase_to=target)
    times = [decode(m.payload).data.readings[0].time for m in publisher.messages]
    assert times == [target, target + timedelta(seconds=7)]
    assert report.first_time == "2026-05-01T12:00:00.000000Z"
