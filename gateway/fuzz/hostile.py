"""The hostile messages of the fuzz corpus: one maker per kind, each with its verdict.

Every maker takes a :class:`Case` (a valid event of one device, as a dict to spoil, and
the seeded random source) and returns the topic, the payload and the dead-letter reason
the gateway must give. :mod:`gateway.fuzz.corpus` maps each
:class:`~gateway.fuzz.corpus.Category` to its maker. The random calls are part of the
corpus: the same seed gives the same messages only while their order stays.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from contract import DeadLetterReason, TopicKind, TopicScheme

__all__ = ["Case", "Made"]

_R = DeadLetterReason
Made = tuple[str, bytes, DeadLetterReason]
"""(topic, payload, reason)."""

DEEPEST_PARSED = 1_000  # Python's json recursion limit (sys.getrecursionlimit())
_NOT_UTC = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-23:59")


class _Device(Protocol):
    site: str
    device: str


@dataclass
class Case:
    """One hostile message in the making."""

    rng: random.Random
    topics: TopicScheme
    start: datetime
    max_payload_bytes: int
    devices: Sequence[_Device]
    dev: _Device
    doc: dict[str, Any]
    """A valid event of ``dev`` as a dict, to be spoiled."""
    topic: str
    """``dev``'s telemetry topic."""

    @property
    def data(self) -> dict[str, Any]:
        """The event's ``data``."""
        data = self.doc["data"]
        assert isinstance(data, dict)
        return data

    @property
    def reading(self) -> dict[str, Any]:
        """The event's first reading."""
        first = self.data["readings"][0]
        assert isinstance(first, dict)
        return first

    def spoilt(self, reason: DeadLetterReason = _R.SCHEMA_VIOLATION) -> Made:
        """Return the (spoilt) event on its own topic with ``reason``."""
        return self.topic, json.dumps(self.doc).encode(), reason


def not_utf8(c: Case) -> Made:
    """Return bytes that are no UTF-8."""
    return c.topic, b"\xff\xfe" + c.rng.randbytes(c.rng.randint(0, 200)), _R.NOT_JSON


def truncated(c: Case) -> Made:
    """Return a valid event, cut short."""
    text = json.dumps(c.doc).encode()
    return c.topic, text[: c.rng.randint(0, len(text) - 1)], _R.NOT_JSON


def deep(c: Case) -> Made:
    """Return arrays or objects nested as deep as the size limit allows."""
    opener, closer = c.rng.choice([("[", "]"), ('{"data":', "}")])
    depth = (c.max_payload_bytes - 1) // len(opener + closer)  # all that fits
    payload = (opener * depth + "1" + closer * depth).encode()
    # Deeper than any JSON parser here recurses: not JSON. Shallower (a small size
    # limit), it parses, and is no event.
    return c.topic, payload, _R.NOT_JSON if depth > DEEPEST_PARSED else _R.SCHEMA_VIOLATION


def not_an_object(c: Case) -> Made:
    """Return jSON that is no object."""
    payload = c.rng.choice([b"[]", b"1", b'"event"', b"null", b"true", b"[{}]", b"-0"])
    return c.topic, payload, _R.SCHEMA_VIOLATION


_WRONG_TYPES: list[tuple[str, Any]] = [
    ("sequence", "seven"),
    ("sequence", -1),
    ("sequence", 2**64),
    ("sequence", 1.5),
    ("readings", {}),
    ("readings", []),
    ("readings", [1, 2]),
    ("site", 7),
    ("device", None),
    ("outbox", ""),
]


def wrong_types(c: Case) -> Made:
    """Return a field of the event with a value of the wrong type or range."""
    field_, bad = c.rng.choice(_WRONG_TYPES)
    c.data[field_] = bad
    return c.spoilt()


def nan_string(c: Case) -> Made:
    """Return naN, infinities and other non-numbers spelled as strings."""
    c.reading["value"] = c.rng.choice(["NaN", "nan", "Infinity", "-inf", "1e999", "", "0x1"])
    return c.spoilt()


def huge_number(c: Case) -> Made:
    """Return a number no double holds (or NaN, Infinity as bare JSON words)."""
    c.reading["value"] = 0.0
    number = c.rng.choice(["1e309", "-1e309", "1" + "0" * 400, "NaN", "Infinity"])
    payload = json.dumps(c.doc).replace('"value": 0.0', f'"value": {number}', 1).encode()
    return c.topic, payload, _R.SCHEMA_VIOLATION


def long_string(c: Case) -> Made:
    """Return a sensor, metric, unit or id far over its length limit."""
    rng = c.rng
    where = rng.choice(["sensor", "metric", "unit", "id"])
    char = rng.choice(["x", "\u00e9", "\U0001f600"])
    most = (c.max_payload_bytes - 2_000) // 12  # fits, even as \\ud83d\\ude00
    text = char * rng.randint(min(300, most), max(min(3000, most), 300))
    if where == "id":
        c.doc["id"] = text
    else:
        c.reading[where] = text
    return c.topic, json.dumps(c.doc, ensure_ascii=rng.random() < 0.5).encode(), _R.SCHEMA_VIOLATION


def unknown_major(c: Case) -> Made:
    """Return an event type of a major version the gateway does not know."""
    c.doc["type"] = f"io.sensorgate.telemetry.reported.v{c.rng.choice([0, 2, 3, 99])}"
    return c.spoilt(_R.UNKNOWN_MAJOR_VERSION)


def other_device(c: Case) -> Made:
    """Return an event on another device's topic."""
    other = c.rng.choice(c.devices)
    if other is c.dev:
        c.data["device"] = c.dev.device + "-x"
    topic = c.topics.telemetry(other.site, other.device) if other is not c.dev else c.topic
    return topic, json.dumps(c.doc).encode(), _R.TOPIC_MISMATCH


def bad_topic_id(c: Case) -> Made:
    """Return a device id the topic scheme refuses ($ anywhere, a trailing backslash)."""
    level = c.rng.choice(["bad$id", "trail\\", "a$", "$b", "x\\"])
    topic = f"{c.topics.prefix}/{c.dev.site}/{level}/{TopicKind.TELEMETRY.value}"
    return topic, json.dumps(c.doc).encode(), _R.TOPIC_MISMATCH


def oversize(c: Case) -> Made:
    """Return a payload over the size limit."""
    c.reading["unit"] = "x" * (c.max_payload_bytes + c.rng.randint(1, 4096))
    return c.spoilt(_R.OVERSIZE)


def _bad_time(c: Case, when: str) -> Made:
    c.reading["time"] = when
    # Times that are no UTC datetime at all are refused by the schema.
    unrepresentable = when in _NOT_UTC
    return c.spoilt(_R.SCHEMA_VIOLATION if unrepresentable else _R.TIMESTAMP_OUT_OF_RANGE)


def _utc(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def time_past(c: Case) -> Made:
    """Return a reading older than the gateway takes."""
    return _bad_time(c, _utc(c.start - timedelta(days=c.rng.randint(31, 20_000))))


def time_future(c: Case) -> Made:
    """Return a reading further ahead than the gateway takes."""
    return _bad_time(c, _utc(c.start + timedelta(hours=c.rng.randint(1, 24 * 365 * 50))))


def time_edge(c: Case) -> Made:
    """Return a reading at the calendar's edges."""
    edges = [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999999Z",
        *_NOT_UTC,
    ]
    return _bad_time(c, c.rng.choice(edges))


def time_invalid(c: Case) -> Made:
    """Return a reading time that is no date."""
    c.reading["time"] = c.rng.choice(
        [
            "2026-02-30T00:00:00Z",
            "2026-11-30T24:00:01Z",
            "2026-13-01T00:00:00Z",
            "2026-11-30T12:00:00+24:00",
            "10000-01-01T00:00:00Z",
            "",
            "yesterday",
        ]
    )
    return c.spoilt()


def status_garbage(c: Case) -> Made:
    """Return garbage on the device's status topic."""
    payload, reason = c.rng.choice(
        [
            (json.dumps(c.doc).encode(), _R.SCHEMA_VIOLATION),  # telemetry, not status
            (b"online", _R.NOT_JSON),
            (b"{}", _R.SCHEMA_VIOLATION),
            (b"\xc3\x28", _R.NOT_JSON),
        ]
    )
    return c.topics.status(c.dev.site, c.dev.device), payload, reason


def command_garbage(c: Case) -> Made:
    """Return garbage on the device's command topic."""
    payload, reason = c.rng.choice(
        [
            (b'{"type": "io.sensorgate.alarm.acknowledge.v1"}', _R.SCHEMA_VIOLATION),
            (b"ack all", _R.NOT_JSON),
            (json.dumps(c.doc).encode(), _R.SCHEMA_VIOLATION),
            (b"[" * 3000 + b"]" * 3000, _R.NOT_JSON),
        ]
    )
    return c.topics.device(c.dev.site, c.dev.device, TopicKind.COMMANDS), payload, reason
