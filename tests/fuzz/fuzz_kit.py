"""Strategies for the fuzz tests: hostile bytes, hostile JSON, floats over the whole range.

Hostile but *structurally valid* JSON matters most: arbitrary bytes are refused at the
first byte, while an event that is right in every field but one reaches deep into the
decoders (the fast path, the pydantic arbiter, the range checks, the windows).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

MAX = 1.7976931348623157e308
MIN_SUBNORMAL = 5e-324
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

EXTREME_FLOATS = [
    MAX,
    -MAX,
    MIN_SUBNORMAL,
    -MIN_SUBNORMAL,
    2.2250738585072014e-308,  # smallest normal
    2.225073858507201e-308,  # largest subnormal
    0.0,
    -0.0,
    1e308,
    -1e308,
    8.98846567431158e307,  # MAX / 2
    1.3407807929942596e154,  # sqrt(MAX): its square overflows
]

finite_floats = st.one_of(
    st.sampled_from(EXTREME_FLOATS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=True, width=64).filter(
        lambda x: abs(x) < 1e-300
    ),
)
"""Every finite double, with the edges (±max, subnormals, -0.0) drawn often."""

# Numbers as JSON text that no float type holds: huge, tiny, many digits, or words.
number_texts = st.sampled_from(
    [
        "1e309",
        "-1e309",
        "1e-400",
        "1" + "0" * 400,
        "0." + "0" * 400 + "1",
        "123456789012345678901234567890",
        "1.7976931348623157e308",
        "-1.7976931348623157e308",
        "1.7976931348623159e308",  # rounds to inf
        "4.9e-324",
        "2.4e-324",  # rounds to 0
        "-0",
        "-0.0",
        "1E5",
        "1e+5",
        "00012",
        "NaN",
        "Infinity",
        "-Infinity",
        "9223372036854775808",  # 2**63
        "18446744073709551616",  # 2**64
        "-9223372036854775809",
    ]
)
number_strings = st.sampled_from(
    ['"NaN"', '"nan"', '"Infinity"', '"-inf"', '"1e309"', '"12.5"', '" 1 "', '""', '"0x10"']
)

edge_times = st.sampled_from(
    [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999999Z",
        "2026-02-30T00:00:00Z",
        "2026-11-30T24:00:00Z",
        "2026-11-30T12:00:60Z",
        "2026-11-30T12:00:00.1234567Z",
        "2026-11-30T12:00:00+14:00",
        "2026-11-30T12:00:00-23:59",
        "2026-11-30T12:00:00+24:00",
        "2026-11-30t12:00:00z",
        "2026-11-30 12:00:00Z",
        "2026-11-30T12:00:00",
        "2026-11-30T12:00:00+0100",
        "2026-W48-1T12:00:00Z",
        "1764504000",
        "",
        "2026-11-30T12:00:00Z\u0000",
        "\uff12026-11-30T12:00:00Z",
    ]
)
near_times = st.integers(-40 * 86_400, 600).map(
    lambda s: (NOW + timedelta(seconds=s)).isoformat().replace("+00:00", "Z")
)
any_time = st.one_of(edge_times, near_times, st.text(max_size=40))

hostile_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            " ",
            "a/b",
            "+",
            "#",
            "$SYS",
            "\u0000",
            "\ud7ff",
            "\U0001f600",
            "e\u0301",
            "\u202e",
            "x" * 300,
            "'; DROP TABLE readings; --",
            "a,b=c d",
            '"quoted"',
            "back\\slash",
            "new\nline",
        ]
    ),
)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    finite_floats,
    hostile_text,
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=16,
)


def deep(depth: int, opener: str = "[", closer: str = "]") -> bytes:
    """JSON nested ``depth`` levels deep (a stack-depth attack)."""
    return (opener * depth + "1" + closer * depth).encode()


def _reading(draw: Any) -> dict[str, Any]:
    reading: dict[str, Any] = {
        "sensor": draw(st.one_of(st.just("env"), hostile_text)),
        "metric": draw(st.one_of(st.sampled_from(["temp", "rh"]), hostile_text)),
        "time": draw(st.one_of(near_times, any_time)),
    }
    value_kind = draw(st.integers(0, 5))
    if value_kind <= 2:
        reading["value"] = draw(finite_floats)
    elif value_kind == 3:
        reading["value"] = draw(json_values)
    elif value_kind == 4:
        reading["fault"] = draw(st.one_of(hostile_text, json_values))
    if draw(st.booleans()):
        reading["unit"] = draw(st.one_of(st.just("C"), hostile_text))
    return reading


@st.composite
def telemetry_docs(draw: Any, site: str = "s", device: str = "d") -> dict[str, Any]:
    """A telemetry event, right in most fields and hostile in some."""
    readings = draw(st.lists(st.builds(dict), min_size=0, max_size=5))
    readings = [_reading(draw) for _ in readings]
    doc: dict[str, Any] = {
        "specversion": draw(st.sampled_from(["1.0", "1.0", "0.3", 1.0])),
        "id": draw(st.one_of(st.just("e-1"), hostile_text)),
        "source": f"/sg/{site}/{device}",
        "type": draw(
            st.sampled_from(
                [
                    "io.sensorgate.telemetry.reported.v1",
                    "io.sensorgate.telemetry.reported.v1",
                    "io.sensorgate.telemetry.reported.v2",
                    "io.sensorgate.device.online.v1",
                    "io.sensorgate.telemetry.reported",
                ]
            )
        ),
        "time": draw(st.one_of(near_times, any_time)),
        "data": {
            "site": draw(st.one_of(st.just(site), hostile_text)),
            "device": draw(st.one_of(st.just(device), hostile_text)),
            "sequence": draw(
                st.one_of(st.integers(0, 1000), st.integers(-(2**65), 2**65), json_values)
            ),
            "readings": readings,
        },
    }
    if draw(st.booleans()):
        doc["data"]["outbox"] = draw(st.one_of(st.just("ob-1"), hostile_text))
    if draw(st.integers(0, 4)) == 0:
        good = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
        doc["traceparent"] = draw(st.one_of(hostile_text, st.just(good)))
    if draw(st.integers(0, 4)) == 0:  # drop or retype a required attribute
        key = draw(st.sampled_from(["id", "source", "type", "time", "data", "specversion"]))
        if draw(st.booleans()):
            del doc[key]
        else:
            doc[key] = draw(json_values)
    return doc


def render(doc: Any, draw: Any) -> bytes:
    """JSON text of ``doc`` with hostile spellings spliced in (numbers, keys, spacing)."""
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()), allow_nan=False)
    trick = draw(st.integers(0, 6))
    if trick == 0 and '"value": ' in text:  # a number no double holds
        head, _, tail = text.partition('"value": ')
        rest = tail.split(",", 1)[1] if "," in tail else "}" + tail.split("}", 1)[1]
        text = head + '"value": ' + draw(number_texts) + ("," + rest if "," in tail else rest)
    elif trick == 1 and '"value": ' in text:  # a number as a string
        text = text.replace('"value": ', '"value": ' + draw(number_strings) + ', "v": ', 1)
    elif trick == 2 and text.startswith("{"):  # a duplicate key: which one wins?
        text = '{"type": "io.sensorgate.telemetry.reported.v2", ' + text[1:]
    elif trick == 3 and '"sequence": ' in text:
        text = text.replace('"sequence": ', '"sequence": ' + draw(number_texts) + ', "s": ', 1)
    elif trick == 4:
        text = text + draw(st.sampled_from(["", " ", "\n", "x", "{}", "\u0000"]))
    elif trick == 5:
        cut = draw(st.integers(0, max(len(text) - 1, 0)))
        text = text[:cut]
    return text.encode("utf-8", "surrogatepass")


@st.composite
def hostile_telemetry(draw: Any, site: str = "s", device: str = "d") -> bytes:
    """Bytes of a hostile telemetry payload (see :func:`telemetry_docs`)."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        return (
            deep(
                draw(st.sampled_from([64, 1000, 5000, 100_000])),
                *draw(st.sampled_from([("[", "]"), ('{"a":', "}")])),
            )
            if draw(st.booleans())
            else deep(draw(st.integers(1, 3000)))
        )
    if choice == 2:
        return render(draw(json_values), draw)
    return render(draw(telemetry_docs(site, device)), draw)


def finite_or_absent(value: float) -> bool:
    """A field InfluxDB can take: finite (a non-finite one must have been left out)."""
    return math.isfinite(value)
