"""Reading foreign payloads: lenient JSON, numbers from what devices actually send, times.

``decode_json`` is msgspec's compiled decoder (no pydantic per message). Two quirks
seen in the field are repaired, and only these: a UTF-8 byte order mark, and a
non-breaking space (U+00A0) where JSON allows whitespace (some firmwares pad numbers
with it). A NBSP inside a string becomes a plain space as well; anything else that is
not JSON is refused with msgspec's own message (line and column).

``Coercer`` turns a JSON value into a reading's float, or ``None`` for "not a reading"
(counted as skipped by the adapters): booleans as 0/1 or skipped, configured enums
(``ON`` -> 1), numeric strings (``"21.5"``) and decimal commas (``"49,97"`` -> 49.97; a
thousands separator is *not* understood: ``"1,234"`` reads 1.234), non-finite numbers
never.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

import msgspec

__all__ = [
    "PLAUSIBLE_US",
    "Coercer",
    "NotJson",
    "decode_json",
    "parse_time_us",
]

PLAUSIBLE_US = 978_307_200_000_000
"""2001-01-01T00:00:00Z: a payload time before this is an unset clock (Tasmota before
NTP reports 1970), and the arrival time is used instead."""

_decode = msgspec.json.decode
_NBSP = b"\xc2\xa0"
_BOM = b"\xef\xbb\xbf"
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


class NotJson(ValueError):
    """A payload that is not JSON, even after the documented repairs."""


def decode_json(payload: bytes) -> Any:
    """Decode ``payload`` as JSON; raise :class:`NotJson` with a precise reason."""
    try:
        return _decode(payload)
    except msgspec.DecodeError as exc:
        first = exc
    fixed = payload
    if fixed.startswith(_BOM):
        fixed = fixed[3:]
    if _NBSP in fixed:
        fixed = fixed.replace(_NBSP, b" ")
    if fixed is not payload:
        try:
            return _decode(fixed)
        except msgspec.DecodeError:
            pass
    raise NotJson(f"payload is not JSON ({first})") from None


class Coercer:
    """Turns JSON values into floats per an adapter's configuration."""

    __slots__ = ("_any_enum", "booleans", "decimal_comma", "enums", "numeric_strings")

    def __init__(
        self,
        *,
        booleans: str = "number",
        enums: Mapping[str, Mapping[str, float]] | None = None,
        numeric_strings: bool = True,
        decimal_comma: bool = True,
    ) -> None:
        self.booleans = booleans == "number"
        self.enums = {k: dict(v) for k, v in (enums or {}).items()}
        self._any_enum = self.enums.get("*", {})
        self.numeric_strings = numeric_strings
        self.decimal_comma = decimal_comma

    def __call__(self, value: Any, field: str = "") -> float | None:
        """Return ``value`` as a finite float, or None when it is not a reading."""
        kind = type(value)
        if kind is float:
            return value if math.isfinite(value) else None
        if kind is int:
            try:
                out = float(value)
            except OverflowError:
                return None
            return out if math.isfinite(out) else None
        if kind is bool:
            return (1.0 if value else 0.0) if self.booleans else None
        if kind is str:
            return self.text(value, field)
        return None

    def plain_numbers(self, field: str = "") -> bool:
        """Whether every plain number text of ``field`` reads as ``float(text)``.

        False when numeric strings are off, or an enum table of ``field`` (or ``"*"``)
        names a text that is a number (the enum would win).
        """
        if not self.numeric_strings:
            return False
        tables = (self.enums.get(field, {}), self._any_enum)
        return not any(_NUMBER.fullmatch(key.strip(" \t\u00a0")) for t in tables for key in t)

    def text(self, value: str, field: str = "") -> float | None:
        """Return a string's number: an enum, a numeric string, a decimal comma."""
        table = self.enums.get(field)
        if table is not None:
            hit = table.get(value)
            if hit is not None:
                return float(hit)
        hit = self._any_enum.get(value)
        if hit is not None:
            return float(hit)
        if not self.numeric_strings:
            return None
        text = value.strip(" \t\u00a0")
        if _NUMBER.fullmatch(text):
            out = float(text)
        elif self.decimal_comma and _DECIMAL_COMMA.fullmatch(text):
            out = float(text.replace(",", "."))
        else:
            return None
        return out if math.isfinite(out) else None


def parse_time_us(value: Any, zone: tzinfo = UTC) -> int | None:
    """Parse an ISO 8601 text or epoch number (s, ms, µs or ns by magnitude) to µs.

    A naive text is read in ``zone`` (Tasmota's ``Time`` is the device's local time);
    returns None when ``value`` is not a time.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0:
            return None
        return epoch_to_us(float(value))
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return int(parsed.timestamp() * 1_000_000) if parsed.year > 1 else None


def epoch_to_us(value: float) -> int:
    """Read an epoch number in s, ms, µs or ns, told apart by magnitude (years 2001-2286)."""
    magnitude = abs(value)
    if magnitude < 1e11:
        return round(value * 1_000_000)
    if magnitude < 1e14:
        return round(value * 1_000)
    if magnitude < 1e17:
        return int(value)
    return int(value // 1_000)
