r"""InfluxDB line protocol for SensorGate's measurements.

Escaping follows the line protocol reference: measurement names escape comma and
space; tag keys and values escape comma, equals sign and space; string field values
escape double quote and backslash. A backslash in a tag value is written as it is:
influxd 1.x keeps ``\\`` in a tag as two characters, so doubling it would change the
id (checked against influxd 1.6 by ``tests/integration/test_encoder_influxd.py``).
The contract refuses ids with control characters or a trailing backslash, the two
things a tag value cannot carry.

The tag part of a series is cached: devices repeat the same few series, and the
escaping is the costly part of a line.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from contract import DeadLetterEvent, TelemetryEvent
from contract.alarms import AlarmDetail, AlarmEvent
from dataflows.windows import Aggregate

__all__ = [
    "aggregate_line",
    "alarm_line",
    "bodies_of",
    "deadletter_line",
    "escape_tag",
    "field_string",
    "reading_lines",
    "to_ns",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_TAG_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")
_FIELD_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
# Dead letters of one reason and topic could share a microsecond; the counter keeps
# their timestamps apart so that one never overwrites another.
_deadletter_tiebreak = itertools.count()


def _safe_tag(value: str) -> str:
    # For free text that did not pass the contract's id rules (a dead letter's topic).
    cleaned = _CONTROL_RE.sub("?", value[:256]) or "-"
    return cleaned + "_" if cleaned.endswith("\\") else cleaned


def escape_tag(value: str) -> str:
    """Escape a tag key or value."""
    return value.translate(_TAG_ESCAPES)


def field_string(value: str) -> str:
    """Return ``value`` as a quoted, escaped string field value."""
    return '"' + value.translate(_FIELD_ESCAPES) + '"'


def to_ns(when: datetime) -> int:
    """Nanoseconds since the Unix epoch, exactly (no float rounding)."""
    return ((when - _EPOCH) // _US) * 1000


@lru_cache(maxsize=262_144)
def _series(measurement: str, site: str, device: str, sensor: str, metric: str) -> str:
    return (
        f"{measurement},device={escape_tag(device)},metric={escape_tag(metric)}"
        f",sensor={escape_tag(sensor)},site={escape_tag(site)}"
    )


def reading_lines(event: TelemetryEvent) -> list[str]:
    """Return one ``readings`` line per reading of ``event``."""
    data = event.data
    seq = data.sequence
    lines = []
    last_time, ns = None, 0
    for r in data.readings:
        if r.time != last_time:  # readings of one message often share instants
            last_time, ns = r.time, to_ns(r.time)
        head = _series("readings", data.site, data.device, r.sensor, r.metric)
        if r.value is not None:
            fields = f"value={float(r.value)!r},seq={seq}i"
        else:
            fields = f"fault={field_string(r.fault or '')},seq={seq}i"
        lines.append(f"{head} {fields} {ns}")
    return lines


def deadletter_line(event: DeadLetterEvent) -> str:
    """Return the ``deadletters`` line of a dead letter, raw bytes in base64."""
    d = event.data
    ns = to_ns(d.received_at) + next(_deadletter_tiebreak) % 1000
    return (
        f"deadletters,reason={escape_tag(d.reason.value)},topic={escape_tag(_safe_tag(d.topic))}"
        f" payload={field_string(d.payload_base64)},error={field_string(d.error)}"
        f",size={d.payload_size}i,event_id={field_string(event.id)}"
        f"{_digest_fields(d.payload_sha256, d.payload_truncated)} {ns}"
    )


def _digest_fields(sha256: str | None, truncated: bool) -> str:
    digest = "" if sha256 is None else f",sha256={field_string(sha256)}"
    return digest + (",truncated=true" if truncated else "")


def aggregate_line(agg: Aggregate) -> str:
    """Return the ``aggregates`` line of a closed window (time: window start)."""
    head = _series("aggregates", agg.site, agg.device, agg.sensor, agg.metric)
    stddev = "" if agg.stddev is None else f",stddev={agg.stddev!r}"
    return (
        f"{head},window={escape_tag(agg.window)} count={agg.count}i,mean={agg.mean!r}"
        f",min={agg.min!r},max={agg.max!r}{stddev},first={agg.first!r},last={agg.last!r}"
        f" {agg.start_us * 1000}"
    )


def alarm_line(event: AlarmEvent, measurement: str = "alarms") -> str:
    """Return the ``alarms`` line of an alarm event (time: the transition's event time).

    Tags: site, device, sensor, metric, rule, severity, state. The state is a tag, so
    the raise and the clear of one alarm are two points even at one instant; the
    ``event`` field (raised, updated, acknowledged, cleared) tells transitions of one
    state apart. The optional explanation (``detail``) adds one field per item it holds,
    named as in :class:`~contract.alarms.AlarmDetail` (``component``, ``expected``,
    ``band_low``, ``band_high``, ``score``, ``history_readings``, ...), and a held alarm
    adds ``folded_raises`` and ``rate_limited``.
    """
    d = event.data
    fields = [
        f"alarm_id={field_string(d.alarm_id)}",
        f"event={field_string(event.type.rsplit('.', 2)[1])}",
        f"kind={field_string(d.kind)}",
        f"message={field_string(d.message)}",
        f"event_id={field_string(event.id)}",
        f"flapping={'true' if d.flapping else 'false'}",
    ]
    if d.value is not None:
        fields.append(f"value={float(d.value)!r}")
    if d.threshold is not None:
        fields.append(f"threshold={float(d.threshold)!r}")
    if d.cause_event_id is not None:
        fields.append(f"cause_event_id={field_string(d.cause_event_id)}")
    if d.cause_reading is not None:
        fields.append(f"cause_reading={field_string(d.cause_reading)}")
    if d.acknowledged_by is not None:
        fields.append(f"acknowledged_by={field_string(d.acknowledged_by)}")
    if d.acknowledged_at is not None:
        fields.append(f"acknowledged_at={to_ns(d.acknowledged_at)}i")
    if d.folded_raises is not None:
        fields.append(f"folded_raises={d.folded_raises}i")
    if d.rate_limited is not None:
        fields.append(f"rate_limited={'true' if d.rate_limited else 'false'}")
    if d.detail is not None:
        fields.extend(_detail_fields(d.detail))
    return (
        f"{escape_tag(measurement)},device={escape_tag(d.device)},metric={escape_tag(d.metric)}"
        f",rule={escape_tag(d.rule)},sensor={escape_tag(d.sensor)}"
        f",severity={escape_tag(d.severity.value)},site={escape_tag(d.site)}"
        f",state={escape_tag(d.state.value)} {','.join(fields)} {to_ns(d.event_time)}"
    )


_DETAIL_INTS = frozenset({"history_readings", "readings_since_fired"})


def _detail_fields(detail: AlarmDetail) -> list[str]:
    """One field per item of an alarm's explanation (strings, floats, integers ``i``)."""
    out = []
    for name, value in detail.model_dump(exclude_none=True).items():
        if isinstance(value, str):
            out.append(f"{name}={field_string(value)}")
        elif name in _DETAIL_INTS:
            out.append(f"{name}={int(value)}i")
        else:
            out.append(f"{name}={float(value)!r}")
    return out


def bodies_of(lines: Sequence[str], size: int) -> list[tuple[bytes, int]]:
    """Join ``lines`` into request bodies of at most ``size`` lines: (body, line count)."""
    return [
        (("\n".join(lines[i : i + size]) + "\n").encode("utf-8"), len(lines[i : i + size]))
        for i in range(0, len(lines), size)
    ]
