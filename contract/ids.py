"""Identifiers of sites, devices, sensors and metrics.

An id becomes one level of an MQTT topic and an InfluxDB tag value, so it must not
contain MQTT's separators and wildcards (``/ + # $``) or control characters, and it
must be non-empty and bounded. It must not end with a backslash: InfluxDB 1.x line
protocol has no way to write a tag value that ends in one. Anything else (spaces,
commas, quotes, any script) is allowed and escaped where it is stored.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

from contract.errors import TopicError

__all__ = ["ID_MAX_LENGTH", "ID_PATTERN", "Id", "check_id"]

ID_MAX_LENGTH = 128
_FORBIDDEN = "/+#$"
# Cc: C0 controls, DEL and the C1 controls.
_CONTROL = "\x00-\x1f\x7f-\x9f"
ID_PATTERN = rf"^[^/+#${_CONTROL}]*[^/+#${_CONTROL}\\]$"
_ID_RE = re.compile(ID_PATTERN)

Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN),
]
"""A site, device, sensor or metric id, validated by pydantic-core (fast path)."""


def check_id(kind: str, value: object) -> str:
    """Return ``value`` if it is an acceptable id, else raise :class:`TopicError`.

    ``kind`` ("site", "device", ...) names the id in the message.
    """
    if not isinstance(value, str):
        raise TopicError(f"{kind} id must be a string; got {type(value).__name__}")
    if not value:
        raise TopicError(f"{kind} id must not be empty")
    if len(value) > ID_MAX_LENGTH:
        raise TopicError(f"{kind} id must be at most {ID_MAX_LENGTH} characters; got {len(value)}")
    if _ID_RE.fullmatch(value) is None:  # match() would let "$" pass a final newline
        if value.endswith("\\"):
            raise TopicError(
                f"{kind} id {value!r} ends with a backslash, which InfluxDB line protocol"
                " cannot store as a tag value; drop or replace the trailing backslash"
            )
        bad = next((c for c in value if c in _FORBIDDEN or re.match(f"[{_CONTROL}]", c)), None)
        raise TopicError(
            f"{kind} id {value!r} contains the character {bad!r}; ids must not contain"
            " / + # $ or control characters"
        )
    return value
