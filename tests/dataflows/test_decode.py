"""The columnar decoder: its fast path accepts a subset of what the contract accepts,
with identical values, and everything else gets the contract's own verdict."""

import json
import math
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import DeadLetterReason, Reading, TelemetryEvent, TopicScheme, encode
from dataflows.batch import MessageBatch
from dataflows.decode import BatchDecoder
from dataflows.decode_fast import _parse_times_polars, _parse_times_python
from dataflows.eventclock import to_us
from dataflows.ingest import Accepted, Ingestor, RawMessage, Rejected
from dataflows.registry import Registry

SCHEME = TopicScheme()
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
NOW_US = to_us(NOW)


def _decode(messages: list[tuple[str, bytes]]) -> tuple[BatchDecoder, object]:
    decoder = BatchDecoder(SCHEME, Registry())
    batch = MessageBatch()
    for topic, payload in messages:
        batch.append(topic, payload, NOW_US)
    return decoder, decoder.decode(batch)


def _rows(decoder: BatchDecoder, out) -> list[tuple]:  # type: ignore[no-untyped-def]
    """Accepted readings as (device, seq, sensor, metric, time µs, value or fault)."""
    names = decoder.registry.names
    rows = []
    pos = 0
    for k, n in enumerate(out.msg_count):
        dev = decoder.registry.devices[out.msg_device[k]]
        for r in range(pos, pos + n):
            s = int(out.series[r])
            v = float(out.value[r])
            rows.append(
                (
                    dev,
                    out.msg_seq[k],
                    names.sensor[s],
                    names.metric[s],
                    int(out.t_us[r]),
                    out.faults[r] if math.isnan(v) else v,
                )
            )
        pos += n
    return rows


def _contract_rows(messages: list[tuple[str, bytes]]) -> tuple[list[tuple], list[tuple]]:
    """What the contract (pydantic) makes of the same messages, one at a time."""
    ingestor = Ingestor(SCHEME)
    rows, rejected = [], []
    for topic, payload in messages:
        result = ingestor.accept(RawMessage(topic, payload, NOW))
        if isinstance(result, Rejected):
            rejected.append((result.reason, result.error))
            continue
        assert isinstance(result, Accepted)
        data = result.event.data
        for r in data.readings:
            rows.append(
                (
                    data.device,
                    data.sequence,
                    r.sensor,
                    r.metric,
                    to_us(r.time),
                    r.fault if r.value is None else float(r.value),
                )
            )
    return rows, rejected


def _event(seq: int, readings: list[dict], device: str = "d") -> bytes:
    event = TelemetryEvent.create(
        site="s",
        device=device,
        sequence=seq,
        readings=[Reading(sensor="x", metric="m", value=1.0, time=NOW)],
    )
    doc = json.loads(encode(event))
    doc["data"]["readings"] = readings
    return json.dumps(doc).encode()


def test_canonical_events_take_the_fast_path() -> None:
    msgs = []
    for i in range(20):
        event = TelemetryEvent.create(
            site="s",
            device=f"d{i % 3}",
            sequence=i,
            readings=[
                Reading(
                    sensor="a",
                    metric=f"m{j}",
                    value=i + j / 10,
                    time=NOW - timedelta(milliseconds=j),
                )
                for j in range(5)
            ],
        )
        msgs.append((SCHEME.telemetry("s", f"d{i % 3}"), encode(event)))
    decoder, out = _decode(msgs)
    assert decoder.fast_messages == 20
    assert decoder.slow_messages == 0
    assert sorted(_rows(decoder, out)) == sorted(_contract_rows(msgs)[0])


def test_lax_or_unusual_but_valid_input_takes_the_slow_path_with_the_same_values() -> None:
    topic = SCHEME.telemetry("s", "d")
    iso = "2026-11-30T12:00:00"
    cases = [
        [{"sensor": "x", "metric": "m", "value": "12.5", "time": iso + "Z"}],  # lax number
        [{"sensor": "x", "metric": "m", "value": 1, "time": iso + "+0130"}],  # no colon
        [{"sensor": "x", "metric": "m", "value": 1, "time": "2026-11-30 12:00:00Z"}],
        [{"sensor": "x", "metric": "m", "value": 1, "time": iso + ".1234567Z"}],  # 7 digits
        [{"sensor": "x", "metric": "m", "fault": "crc", "time": iso + "Z"}],  # a fault
        [{"sensor": "x", "metric": "m", "value": True, "time": iso + "Z"}],  # lax: 1.0
    ]
    msgs = [(topic, _event(i, readings)) for i, readings in enumerate(cases)]
    decoder, out = _decode(msgs)
    want, rejected = _contract_rows(msgs)
    assert not rejected
    assert decoder.slow_messages == len(cases)
    assert sorted(_rows(decoder, out), key=str) == sorted(want, key=str)


def test_invalid_input_gets_the_contracts_reason() -> None:
    topic = SCHEME.telemetry("s", "d")
    iso = "2026-11-30T12:00:00Z"
    bad = [
        b"\xff\xfe",
        b"[]",
        _event(1, [{"sensor": "x", "metric": "m", "value": 1, "time": "2026-11-30T12:00:00"}]),
        _event(2, [{"sensor": "x", "metric": "m", "value": 1, "fault": "f", "time": iso}]),
        _event(3, [{"sensor": "a/b", "metric": "m", "value": 1, "time": iso}]),
        _event(4, [{"sensor": "x", "metric": "m", "value": 1, "time": "2026-02-30T12:00:00Z"}]),
        _event(5, [{"sensor": "x", "metric": "m", "value": 1, "time": "2026-11-30T23:59:60Z"}]),
        _event(6, [{"sensor": "x", "metric": "m", "value": 1, "time": "2025-01-01T00:00:00Z"}]),
        _event(7, [{"sensor": "x", "metric": "m", "value": 1e999, "time": iso}]),
        _event(8, []),
        _event(9, [{"sensor": "x", "metric": "m", "value": 1, "time": iso, "unit": "u" * 33}]),
    ]
    msgs = [(topic, payload) for payload in bad]
    _decoder, out = _decode(msgs)
    _, want = _contract_rows(msgs)
    assert out.messages == 0  # type: ignore[attr-defined]
    got = [(r.reason, r.error) for r in out.rejected]  # type: ignore[attr-defined]
    assert got == want
    assert DeadLetterReason.TIMESTAMP_OUT_OF_RANGE in {r for r, _ in got}


# hypothesis wants naive bounds and adds the zones itself.
_LO, _HI = datetime(2026, 11, 1), datetime(2026, 12, 1)  # noqa: DTZ001
_times = st.one_of(
    st.datetimes(min_value=_LO, max_value=_HI, timezones=st.just(UTC)).map(
        lambda d: d.isoformat().replace("+00:00", "Z")
    ),
    st.datetimes(
        min_value=_LO,
        max_value=_HI,
        timezones=st.sampled_from(
            [UTC, *(__import__("datetime").timezone(timedelta(hours=h)) for h in (-5, 2, 14))]
        ),
    ).map(lambda d: d.isoformat()),
    st.text(alphabet="0123456789-:TZ+. tz", max_size=32),
)
_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**70), 2**70),
    st.text(max_size=5),
    st.none(),
    st.booleans(),
)
_ids = st.one_of(st.sampled_from(["x", "m", "caf\u00e9", "a b", 'q"t']), st.text(max_size=4))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    readings=st.lists(
        st.fixed_dictionaries(
            {"sensor": _ids, "metric": _ids, "time": _times},
            optional={"value": _values, "fault": st.one_of(st.none(), st.text(max_size=3))},
        ),
        max_size=4,
    ),
    seq=st.integers(-2, 2**64),
)
def test_fast_path_never_disagrees_with_the_contract(readings: list[dict], seq: int) -> None:
    topic = SCHEME.telemetry("s", "d")
    try:
        payload = _event(0, readings).replace(b'"sequence": 0', f'"sequence": {seq}'.encode())
    except (TypeError, ValueError):
        return
    msgs = [(topic, payload)]
    decoder, out = _decode(msgs)
    want_rows, want_rejected = _contract_rows(msgs)
    assert _rows(decoder, out) == want_rows
    assert [(r.reason, r.error) for r in out.rejected] == want_rejected  # type: ignore[attr-defined]


_time_texts = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 2),  # noqa: DTZ001 - naive bounds, zones drawn below
        max_value=datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=st.sampled_from([UTC, *(timezone(timedelta(hours=h)) for h in (-5, 2, 14))]),
    ).map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.from_regex(
        r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?"
        r"(Z|z|[+-][0-9]{2}:?[0-9]{2})?\Z"
    ),
    st.text(alphabet="0123456789-:TZ+. tz\u0661", max_size=32),
)


@settings(max_examples=300, deadline=None)
@given(times=st.lists(_time_texts, max_size=40))
def test_both_time_parsers_agree_on_every_time_they_accept(times: list[str]) -> None:
    # Few times per call are parsed in Python, many in polars: a time both accept has
    # one value; one that either refuses sends its message to the contract's slow path.
    py_us, py_good = _parse_times_python(times)
    pl_us, pl_good = _parse_times_polars(times)
    both = py_good & pl_good
    assert (py_us[both] == pl_us[both]).all()
    # They differ on year 0 only: chrono has it, Python has not (and the event-time
    # range refuses it anyway).
    for text, py, pl in zip(times, py_good.tolist(), pl_good.tolist(), strict=True):
        assert py == pl or (pl and text.startswith("0000")), text


def test_the_time_parsers_refuse_impossible_dates_and_loose_grammar() -> None:
    times = [
        "2026-12-01T00:00:00Z",
        "2026-12-01T00:00:00.123456+02:00",
        "2024-02-29T23:59:59.5-05:00",
        "2026-02-30T00:00:00Z",  # no such day
        "2026-12-01t00:00:00Z",  # lower-case t: the contract's slow path decides
        "2026-12-01T24:00:00Z",
        "2026-12-01T00:00:60Z",
        "2026-12-01T00:00:00",  # no offset
        "2026-12-01T00:00:00.1234567Z",  # seven digits
        "2026-12-01T00:00:00+0200",  # offset without a colon
        "\u0662\u0660\u0662\u0666-12-01T00:00:00Z",  # Arabic-Indic digits
    ]
    want_good = [True, True, True] + [False] * 8
    for parse in (_parse_times_python, _parse_times_polars):
        us, good = parse(times)
        assert good.tolist() == want_good, parse.__name__
        assert us[:3].tolist() == [
            to_us(datetime(2026, 12, 1, tzinfo=UTC)),
            to_us(datetime(2026, 11, 30, 22, 0, 0, 123456, tzinfo=UTC)),
            to_us(datetime(2024, 3, 1, 4, 59, 59, 500000, tzinfo=UTC)),
        ]
