r"""A seeded corpus of hostile messages, each with the verdict the gateway must reach.

:func:`generate` yields :class:`Message` objects: a topic, a payload, the generator's
:class:`Category` and the :class:`Expect`\\ ed outcome, accepted with ``readings``
readings, a duplicate of ``readings`` readings, or a dead letter with one fixed
:class:`~contract.reasons.DeadLetterReason`. A :class:`Tally` adds expectations up, so a
run can compare what the gateway counted with what it had to count.

The mix: valid telemetry (ordinary and extreme values: ±1.7976931348623157e308,
subnormals, -0.0, +max and -max in one window), exact re-sends (duplicates), bytes that
are not UTF-8, truncated and deeply nested JSON, JSON that is not an event, events with
wrong types or NaN/inf spelled as strings or as numbers no double holds, unknown major
versions, an event on another device's topic, ids the topic scheme refuses, payloads
over the size limit, reading times out of range or at the calendar's edges, and garbage
on status and command topics. Valid readings never share a series and a time, so
every accepted reading is one point in InfluxDB.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from contract import DeadLetterReason, Reading, TelemetryEvent, TopicKind, TopicScheme, encode

__all__ = ["Category", "Expect", "Message", "Tally", "generate"]

MAX = 1.7976931348623157e308
_EXTREMES = (MAX, -MAX, 5e-324, -5e-324, 2.2250738585072014e-308, -0.0, 0.0, 1e308, -1e308)
_METRICS = 10
_R = DeadLetterReason


class Category(StrEnum):
    """What the generator meant a message to be."""

    VALID = "valid"
    EXTREME = "extreme_values"
    DUPLICATE = "duplicate"
    NOT_UTF8 = "not_utf8"
    TRUNCATED = "truncated_json"
    DEEP = "deep_nesting"
    NOT_AN_OBJECT = "json_not_an_object"
    WRONG_TYPES = "wrong_types"
    NAN_STRING = "nan_as_string"
    HUGE_NUMBER = "number_beyond_double"
    LONG_STRING = "long_string"
    UNKNOWN_MAJOR = "unknown_major"
    OTHER_DEVICE = "other_devices_topic"
    BAD_TOPIC_ID = "bad_topic_id"
    OVERSIZE = "oversize"
    TIME_PAST = "time_too_old"
    TIME_FUTURE = "time_in_future"
    TIME_EDGE = "time_at_calendar_edge"
    TIME_INVALID = "time_invalid_date"
    STATUS_GARBAGE = "status_garbage"
    COMMAND_GARBAGE = "command_garbage"


@dataclass(frozen=True, slots=True)
class Expect:
    """The verdict: ``accepted`` or ``duplicate`` with ``readings``, or a dead letter."""

    outcome: str
    readings: int = 0
    reason: DeadLetterReason | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One generated message."""

    topic: str
    payload: bytes
    category: Category
    expect: Expect


@dataclass
class Tally:
    """Expected totals of a corpus (or counted totals of a run)."""

    messages: int = 0
    accepted: int = 0
    readings: int = 0
    duplicates: int = 0
    duplicate_readings: int = 0
    deadletters: Counter[str] = field(default_factory=Counter)
    by_category: Counter[str] = field(default_factory=Counter)
    reasons_by_category: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, msg: Message) -> None:
        """Count ``msg``'s expectation."""
        self.messages += 1
        self.by_category[msg.category.value] += 1
        e = msg.expect
        if e.outcome == "accepted":
            self.accepted += 1
            self.readings += e.readings
        elif e.outcome == "duplicate":
            self.duplicates += 1
            self.duplicate_readings += e.readings
        else:
            assert e.reason is not None
            self.deadletters[e.reason.value] += 1
            per = self.reasons_by_category.setdefault(msg.category.value, Counter())
            per[e.reason.value] += 1


@dataclass
class _Device:
    site: str
    device: str
    outbox: str
    seq: int = 0
    t_us: int = 0
    sent: list[tuple[bytes, int]] = field(default_factory=list)
    """(payload, readings) of recent valid messages, to re-send as duplicates."""


def _iso(start: datetime, t_us: int) -> datetime:
    return start + timedelta(microseconds=t_us)


class _Generator:
    def __init__(
        self,
        rng: random.Random,
        topics: TopicScheme,
        start: datetime,
        devices: int,
        max_payload_bytes: int,
    ) -> None:
        self.rng = rng
        self.topics = topics
        self.start = start
        self.max_payload_bytes = max_payload_bytes
        self.devices = [
            _Device(f"site-{i % 7}", f"fz-{i:04d}", f"ob-{rng.getrandbits(48):012x}")
            for i in range(devices)
        ]

    # -- valid telemetry ------------------------------------------------------------

    def _event(self, dev: _Device, values: list[float], *, bump: bool = True) -> TelemetryEvent:
        """Return a valid event of ``dev``: readings on distinct (series, time) points."""
        readings = []
        for i, value in enumerate(values):
            if i % _METRICS == 0:
                dev.t_us += 1_000  # a new time for each round of the metrics
            readings.append(
                Reading(
                    sensor="env",
                    metric=f"m{i % _METRICS}",
                    value=value,
                    time=_iso(self.start, dev.t_us),
                )
            )
        event = TelemetryEvent.create(
            site=dev.site,
            device=dev.device,
            sequence=dev.seq,
            readings=readings,
            outbox=dev.outbox,
            time=_iso(self.start, dev.t_us),
        )
        if bump:
            dev.seq += 1
        return event

    def _values(self, n: int) -> list[float]:
        return [round(self.rng.gauss(20, 5), 3) for _ in range(n)]

    def valid(self, dev: _Device, extreme: bool = False) -> Message:
        n = self.rng.randint(1, 50)
        values = self._values(n)
        if extreme:
            values = [self.rng.choice(_EXTREMES) for _ in range(n)]
            if n >= 2 * _METRICS:  # +max and -max in one series and window (issue 14)
                values[0], values[_METRICS] = MAX, -MAX
        payload = encode(self._event(dev, values))
        dev.sent.append((payload, n))
        del dev.sent[:-8]
        category = Category.EXTREME if extreme else Category.VALID
        return Message(self._topic(dev), payload, category, Expect("accepted", n))

    def duplicate(self, dev: _Device) -> Message:
        if not dev.sent:
            return self.valid(dev)
        payload, n = self.rng.choice(dev.sent)
        return Message(self._topic(dev), payload, Category.DUPLICATE, Expect("duplicate", n))

    def _topic(self, dev: _Device) -> str:
        return self.topics.telemetry(dev.site, dev.device)

    # -- dead letters ---------------------------------------------------------------

    def _doc(self, dev: _Device) -> dict[str, object]:
        """Return a valid event as a dict, to be made invalid (it takes no sequence number)."""
        event = self._event(dev, self._values(self.rng.randint(1, 5)), bump=False)
        doc: dict[str, object] = json.loads(encode(event))
        return doc

    def dead(self, dev: _Device, category: Category) -> Message:
        rng = self.rng
        topic = self._topic(dev)
        doc = self._doc(dev)
        data = doc["data"]
        assert isinstance(data, dict)
        reading = data["readings"][0]
        reason = _R.SCHEMA_VIOLATION
        if category is Category.NOT_UTF8:
            payload = b"\xff\xfe" + rng.randbytes(rng.randint(0, 200))
            reason = _R.NOT_JSON
        elif category is Category.TRUNCATED:
            text = json.dumps(doc).encode()
            payload = text[: rng.randint(0, len(text) - 1)]
            reason = _R.NOT_JSON
        elif category is Category.DEEP:
            opener, closer = rng.choice([("[", "]"), ('{"data":', "}")])
            depth = (self.max_payload_bytes - 1) // len(opener + closer)  # all that fits
            payload = (opener * depth + "1" + closer * depth).encode()
            # Deeper than any JSON parser here recurses: not JSON. Shallower (a small
            # size limit), it parses, and is no event.
            reason = _R.NOT_JSON if depth > _DEEPEST_PARSED else _R.SCHEMA_VIOLATION
        elif category is Category.NOT_AN_OBJECT:
            payload = rng.choice([b"[]", b"1", b'"event"', b"null", b"true", b"[{}]", b"-0"])
        elif category is Category.WRONG_TYPES:
            field_, bad = rng.choice(
                [
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
            )
            data[field_] = bad
            payload = json.dumps(doc).encode()
        elif category is Category.NAN_STRING:
            reading["value"] = rng.choice(["NaN", "nan", "Infinity", "-inf", "1e999", "", "0x1"])
            payload = json.dumps(doc).encode()
        elif category is Category.HUGE_NUMBER:
            reading["value"] = 0.0
            number = rng.choice(["1e309", "-1e309", "1" + "0" * 400, "NaN", "Infinity"])
            payload = json.dumps(doc).replace('"value": 0.0', f'"value": {number}', 1).encode()
        elif category is Category.LONG_STRING:
            where = rng.choice(["sensor", "metric", "unit", "id"])
            char = rng.choice(["x", "\u00e9", "\U0001f600"])
            most = (self.max_payload_bytes - 2_000) // 12  # fits, even as \\ud83d\\ude00
            text = char * rng.randint(min(300, most), max(min(3000, most), 300))
            if where == "id":
                doc["id"] = text
            else:
                reading[where] = text
            payload = json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode()
        elif category is Category.UNKNOWN_MAJOR:
            doc["type"] = f"io.sensorgate.telemetry.reported.v{rng.choice([0, 2, 3, 99])}"
            payload = json.dumps(doc).encode()
            reason = _R.UNKNOWN_MAJOR_VERSION
        elif category is Category.OTHER_DEVICE:
            other = rng.choice(self.devices)
            if other is dev:
                data["device"] = dev.device + "-x"
            topic = self._topic(other) if other is not dev else topic
            payload = json.dumps(doc).encode()
            reason = _R.TOPIC_MISMATCH
        elif category is Category.BAD_TOPIC_ID:
            level = rng.choice(
                ["bad$id", "trail\\", "a$", "$b", "x\\"]
            )  # ids refuse $ and a trailing \\
            topic = f"{self.topics.prefix}/{dev.site}/{level}/{TopicKind.TELEMETRY.value}"
            payload = json.dumps(doc).encode()
            reason = _R.TOPIC_MISMATCH
        elif category is Category.OVERSIZE:
            size = self.max_payload_bytes + rng.randint(1, 4096)
            reading["unit"] = "x" * size
            payload = json.dumps(doc).encode()
            reason = _R.OVERSIZE
        elif category in (Category.TIME_PAST, Category.TIME_FUTURE, Category.TIME_EDGE):
            reading["time"] = self._bad_time(category)
            payload = json.dumps(doc).encode()
            # Times that are no UTC datetime at all are refused by the schema.
            unrepresentable = reading["time"] in _NOT_UTC
            reason = _R.SCHEMA_VIOLATION if unrepresentable else _R.TIMESTAMP_OUT_OF_RANGE
        elif category is Category.TIME_INVALID:
            reading["time"] = rng.choice(
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
            payload = json.dumps(doc).encode()
        elif category is Category.STATUS_GARBAGE:
            topic = self.topics.status(dev.site, dev.device)
            payload, reason = rng.choice(
                [
                    (json.dumps(doc).encode(), _R.SCHEMA_VIOLATION),  # telemetry, not status
                    (b"online", _R.NOT_JSON),
                    (b"{}", _R.SCHEMA_VIOLATION),
                    (b"\xc3\x28", _R.NOT_JSON),
                ]
            )
        elif category is Category.COMMAND_GARBAGE:
            topic = self.topics.device(dev.site, dev.device, TopicKind.COMMANDS)
            payload, reason = rng.choice(
                [
                    (b'{"type": "io.sensorgate.alarm.acknowledge.v1"}', _R.SCHEMA_VIOLATION),
                    (b"ack all", _R.NOT_JSON),
                    (json.dumps(doc).encode(), _R.SCHEMA_VIOLATION),
                    (b"[" * 3000 + b"]" * 3000, _R.NOT_JSON),
                ]
            )
        else:  # pragma: no cover - every category is handled above
            raise AssertionError(category)
        return Message(topic, payload, category, Expect("deadletter", reason=reason))

    def _bad_time(self, category: Category) -> str:
        rng = self.rng
        if category is Category.TIME_PAST:
            when = self.start - timedelta(days=rng.randint(31, 20_000))
        elif category is Category.TIME_FUTURE:
            when = self.start + timedelta(hours=rng.randint(1, 24 * 365 * 50))
        else:
            return rng.choice(
                [
                    "0001-01-01T00:00:00Z",
                    "9999-12-31T23:59:59.999999Z",
                    "1970-01-01T00:00:00Z",
                    "1969-12-31T23:59:59.999999Z",
                    *_NOT_UTC,
                ]
            )
        return when.isoformat().replace("+00:00", "Z")


_DEEPEST_PARSED = 1_000  # Python's json recursion limit (sys.getrecursionlimit())
_NOT_UTC = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-23:59")

# Relative frequencies: most of the traffic is valid, every hostile kind is frequent.
_WEIGHTS: dict[Category, int] = {
    Category.VALID: 30,
    Category.EXTREME: 6,
    Category.DUPLICATE: 8,
    Category.NOT_UTF8: 4,
    Category.TRUNCATED: 4,
    Category.DEEP: 2,
    Category.NOT_AN_OBJECT: 3,
    Category.WRONG_TYPES: 5,
    Category.NAN_STRING: 3,
    Category.HUGE_NUMBER: 3,
    Category.LONG_STRING: 3,
    Category.UNKNOWN_MAJOR: 3,
    Category.OTHER_DEVICE: 3,
    Category.BAD_TOPIC_ID: 3,
    Category.OVERSIZE: 2,
    Category.TIME_PAST: 3,
    Category.TIME_FUTURE: 3,
    Category.TIME_EDGE: 3,
    Category.TIME_INVALID: 3,
    Category.STATUS_GARBAGE: 3,
    Category.COMMAND_GARBAGE: 3,
}


def generate(
    count: int,
    *,
    seed: int,
    start: datetime,
    topics: TopicScheme | None = None,
    devices: int = 200,
    max_payload_bytes: int = 16_384,
) -> Iterator[Message]:
    """Yield ``count`` messages, the same ones for the same arguments.

    Valid readings are dated from ``start`` on, a millisecond apart per device:
    ``start`` should be shortly before the messages are published (the gateway takes
    readings from 30 days back to 5 minutes ahead of their arrival).
    """
    rng = random.Random(seed)
    gen = _Generator(rng, topics or TopicScheme(), start, devices, max_payload_bytes)
    kinds = list(_WEIGHTS)
    weights = list(_WEIGHTS.values())
    for _ in range(count):
        category = rng.choices(kinds, weights)[0]
        dev = rng.choice(gen.devices)
        if category is Category.VALID:
            yield gen.valid(dev)
        elif category is Category.EXTREME:
            yield gen.valid(dev, extreme=True)
        elif category is Category.DUPLICATE:
            yield gen.duplicate(dev)
        else:
            yield gen.dead(dev, category)
