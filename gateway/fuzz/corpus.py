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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from contract import DeadLetterReason, Reading, TelemetryEvent, TopicScheme, encode
from gateway.fuzz import hostile

__all__ = ["Category", "Expect", "Message", "Tally", "generate"]

MAX = 1.7976931348623157e308
_EXTREMES = (MAX, -MAX, 5e-324, -5e-324, 2.2250738585072014e-308, -0.0, 0.0, 1e308, -1e308)
_METRICS = 10


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
        topic = self._topic(dev)
        case = hostile.Case(
            self.rng,
            self.topics,
            self.start,
            self.max_payload_bytes,
            self.devices,
            dev,
            self._doc(dev),
            topic,
        )
        topic, payload, reason = _HOSTILE[category](case)
        return Message(topic, payload, category, Expect("deadletter", reason=reason))


# Each hostile kind and its maker (a table: the makers live in gateway.fuzz.hostile).
_HOSTILE: dict[Category, Callable[[hostile.Case], hostile.Made]] = {
    Category.NOT_UTF8: hostile.not_utf8,
    Category.TRUNCATED: hostile.truncated,
    Category.DEEP: hostile.deep,
    Category.NOT_AN_OBJECT: hostile.not_an_object,
    Category.WRONG_TYPES: hostile.wrong_types,
    Category.NAN_STRING: hostile.nan_string,
    Category.HUGE_NUMBER: hostile.huge_number,
    Category.LONG_STRING: hostile.long_string,
    Category.UNKNOWN_MAJOR: hostile.unknown_major,
    Category.OTHER_DEVICE: hostile.other_device,
    Category.BAD_TOPIC_ID: hostile.bad_topic_id,
    Category.OVERSIZE: hostile.oversize,
    Category.TIME_PAST: hostile.time_past,
    Category.TIME_FUTURE: hostile.time_future,
    Category.TIME_EDGE: hostile.time_edge,
    Category.TIME_INVALID: hostile.time_invalid,
    Category.STATUS_GARBAGE: hostile.status_garbage,
    Category.COMMAND_GARBAGE: hostile.command_garbage,
}

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
