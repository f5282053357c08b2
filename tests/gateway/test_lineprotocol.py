from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from influxdb_client import Point, WritePrecision

from contract import DeadLetterEvent, DeadLetterReason, Reading, TelemetryEvent
from gateway.influx.lineprotocol import deadletter_line, field_string, reading_lines, to_ns

# Without backslashes, our escaping must agree with influxdb-client's own.
plain_ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/+#$\\"),
    min_size=1,
    max_size=30,
)


@given(
    site=plain_ids,
    device=plain_ids,
    sensor=plain_ids,
    metric=plain_ids,
    value=st.floats(allow_nan=False, allow_infinity=False),
)
def test_reading_lines_match_influxdb_client(
    site: str, device: str, sensor: str, metric: str, value: float
) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    event = TelemetryEvent.create(
        site=site,
        device=device,
        sequence=42,
        readings=[Reading(sensor=sensor, metric=metric, value=value, time=when)],
    )
    expected = (
        Point("readings")
        .tag("device", device)
        .tag("metric", metric)
        .tag("sensor", sensor)
        .tag("site", site)
        .field("value", float(value))
        .field("seq", 42)
        .time(to_ns(when), WritePrecision.NS)
        .to_line_protocol()
    )
    # influxdb-client sorts fields by name; ours are value then seq.
    ours = reading_lines(event)[0]
    head, fields, ts = _split(ours)
    e_head, e_fields, e_ts = _split(expected)
    assert head == e_head
    assert ts == e_ts
    assert _fields(fields) == _fields(e_fields)


def _fields(text: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for part in text.split(","):
        key, value = part.split("=", 1)
        out[key] = int(value[:-1]) if value.endswith("i") else float(value)
    return out


def _split(line: str) -> tuple[str, str, str]:
    # Numeric fields hold no spaces, so the last two spaces are the separators.
    head, fields, ts = line.rsplit(" ", 2)
    return head, fields, ts


def test_to_ns_is_exact() -> None:
    when = datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC)
    assert to_ns(when) == 9223372036854775000


def test_fault_readings_carry_the_fault_string() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    event = TelemetryEvent.create(
        site="s",
        device="d",
        sequence=1,
        readings=[Reading(sensor="w1", metric="temp", fault='crc "NO"', time=when)],
    )
    assert reading_lines(event) == [
        f'readings,device=d,metric=temp,sensor=w1,site=s fault="crc \\"NO\\"",seq=1i {to_ns(when)}'
    ]


def test_field_string_escapes_quotes_and_backslashes() -> None:
    assert field_string('a"b\\c') == '"a\\"b\\\\c"'


def test_deadletter_lines_never_share_a_timestamp() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    letters = [
        DeadLetterEvent.create(
            reason=DeadLetterReason.NOT_JSON,
            error="e",
            topic="t\n\\",
            payload=b"x",
            received_at=when,
        )
        for _ in range(50)
    ]
    lines = [deadletter_line(d) for d in letters]
    assert len({line.rsplit(" ", 1)[1] for line in lines}) == 50
    assert "topic=t?\\_ " in lines[0]  # control char replaced, trailing backslash guarded
