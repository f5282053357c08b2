r"""A parser for InfluxDB line protocol, as Telegraf's ``influx`` serializer writes it.

``measurement[,tag=value...] field=value[,field=value...] [timestamp]``, one point per
line; ``#`` comments and blank lines are skipped. Escapes: ``\,`` and ``\ `` in the
measurement, ``\,`` ``\=`` ``\ `` in tag keys, tag values and field keys, ``\"`` and
``\\`` inside string field values. Field values: floats (``1.5``, ``-2e3``), integers
(``12i``), unsigned (``12u``), booleans (``t``, ``true``, ``F``, ``FALSE``...) and
double-quoted strings. Lines without ``\`` or ``"`` take a fast path (``str.split``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LineError", "Point", "parse_lines"]

FieldValue = float | int | bool | str

_TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
_FALSE = frozenset({"f", "F", "false", "False", "FALSE"})


class LineError(ValueError):
    """A line that is not line protocol; the message says where."""


@dataclass(frozen=True, slots=True)
class Point:
    """One parsed line."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    timestamp: int | None


def parse_lines(text: str) -> list[tuple[int, Point | LineError]]:
    """Parse every line; return ``(line number, point or error)`` for each non-blank line."""
    out: list[tuple[int, Point | LineError]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip("\r\t ")
        if not line or line.startswith("#"):
            continue
        try:
            point = _fast(line) if "\\" not in line and '"' not in line else _slow(line)
        except LineError as exc:
            out.append((number, exc))
        else:
            out.append((number, point))
    return out


def _value(text: str, key: str) -> FieldValue:
    if not text:
        raise LineError(f"field {key!r} has no value")
    last = text[-1]
    try:
        if last == "i":
            return int(text[:-1])
        if last == "u":
            value = int(text[:-1])
            if value < 0:
                raise LineError(f"field {key!r}: unsigned value {text!r} is negative")
            return value
    except ValueError:
        raise LineError(f"field {key!r}: {text!r} is not an integer") from None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    try:
        return float(text)
    except ValueError:
        raise LineError(f"field {key!r}: {text!r} is not a number, boolean or string") from None


def _timestamp(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise LineError(f"timestamp {text!r} is not an integer") from None


def _fast(line: str) -> Point:
    parts = line.split(" ")
    if len(parts) not in (2, 3) or not all(parts):
        raise LineError("expected 'measurement[,tags] fields [timestamp]' separated by one space")
    head = parts[0].split(",")
    measurement = head[0]
    if not measurement:
        raise LineError("empty measurement name")
    tags: dict[str, str] = {}
    for item in head[1:]:
        key, eq, value = item.partition("=")
        if not eq or not key or not value:
            raise LineError(f"tag {item!r} is not key=value")
        tags[key] = value
    fields: dict[str, FieldValue] = {}
    for item in parts[1].split(","):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise LineError(f"field {item!r} is not key=value")
        fields[key] = _value(value, key)
    return Point(measurement, tags, fields, _timestamp(parts[2]) if len(parts) == 3 else None)


class _Scanner:
    __slots__ = ("i", "line")

    def __init__(self, line: str) -> None:
        self.line = line
        self.i = 0

    def token(self, stops: str) -> str:
        """Read up to an unescaped character of ``stops`` (backslash escapes anything)."""
        line, out = self.line, []
        while self.i < len(line):
            c = line[self.i]
            if c == "\\" and self.i + 1 < len(line):
                out.append(line[self.i + 1])
                self.i += 2
                continue
            if c in stops:
                break
            out.append(c)
            self.i += 1
        return "".join(out)

    def peek(self) -> str:
        return self.line[self.i] if self.i < len(self.line) else ""

    def string(self) -> str:
        """Read a double-quoted string value (the opening quote is current)."""
        line, out = self.line, []
        self.i += 1
        while self.i < len(line):
            c = line[self.i]
            if c == "\\" and self.i + 1 < len(line) and line[self.i + 1] in '"\\':
                out.append(line[self.i + 1])
                self.i += 2
                continue
            if c == '"':
                self.i += 1
                return "".join(out)
            out.append(c)
            self.i += 1
        raise LineError("unterminated string field value")


def _slow(line: str) -> Point:
    s = _Scanner(line)
    measurement = s.token(", ")
    if not measurement:
        raise LineError("empty measurement name")
    tags: dict[str, str] = {}
    while s.peek() == ",":
        s.i += 1
        key = s.token("=, ")
        if s.peek() != "=":
            raise LineError(f"tag {key!r} has no '='")
        s.i += 1
        value = s.token(", ")
        if not key or not value:
            raise LineError(f"tag {key!r} is not key=value")
        tags[key] = value
    if s.peek() != " ":
        raise LineError("expected a space before the fields")
    s.i += 1
    fields: dict[str, FieldValue] = {}
    while True:
        key = s.token("=, ")
        if s.peek() != "=" or not key:
            raise LineError(f"field {key!r} is not key=value")
        s.i += 1
        if s.peek() == '"':
            fields[key] = s.string()
        else:
            fields[key] = _value(s.token(", "), key)
        if s.peek() == ",":
            s.i += 1
            continue
        break
    timestamp = None
    if s.peek() == " ":
        s.i += 1
        rest = line[s.i :]
        if not rest or " " in rest:
            raise LineError(f"expected a timestamp after the fields; got {rest!r}")
        timestamp = _timestamp(rest)
    elif s.i != len(line):
        raise LineError(f"unexpected {line[s.i :]!r} after the fields")
    return Point(measurement, tags, fields, timestamp)
