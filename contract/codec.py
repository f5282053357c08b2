"""Encode events to bytes and decode bytes to events, with typed errors.

:func:`decode` never raises anything but :class:`~contract.errors.DecodeError`,
whose ``reason`` is one of the fixed dead-letter reasons. Valid input takes one pass
through pydantic-core; only invalid input pays for working out what went wrong.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, TypeVar

from pydantic import Field, TypeAdapter, ValidationError

from contract.errors import DecodeError
from contract.events import EVENT_FAMILIES, Envelope, Event
from contract.reasons import DeadLetterReason

__all__ = ["DEFAULT_MAX_PAYLOAD_BYTES", "decode", "decode_as", "encode"]

DEFAULT_MAX_PAYLOAD_BYTES = 1_048_576
_TYPE_RE = re.compile(r"^(?P<family>.+)\.v(?P<major>[0-9]+)$")
_ANY_EVENT: TypeAdapter[Event] = TypeAdapter(Annotated[Event, Field(discriminator="type")])
_KNOWN_TYPES = {f"{family}.v{major}" for family, major in EVENT_FAMILIES.items()}
E = TypeVar("E", bound=Envelope)


def encode(event: Event) -> bytes:
    """Return the structured-mode CloudEvents JSON of ``event`` as UTF-8 bytes."""
    return event.model_dump_json(exclude_none=True).encode("utf-8")


def decode(raw: bytes, *, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> Event:
    """Decode ``raw`` into whichever known event it is.

    Raises :class:`DecodeError` with the reason and what was expected and arrived.
    """
    _check_size(raw, max_bytes)
    try:
        return _ANY_EVENT.validate_json(raw)
    except ValidationError as exc:
        raise _diagnose(raw, exc, expected=None) from None
    except Exception as exc:  # pragma: no cover - pydantic-core raises ValidationError
        raise DecodeError(DeadLetterReason.DECODE_ERROR, f"{type(exc).__name__}: {exc}") from None


def decode_as(raw: bytes, event_type: type[E], *, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> E:
    """Decode ``raw`` as exactly ``event_type``; any other type is a schema violation."""
    _check_size(raw, max_bytes)
    try:
        return event_type.model_validate_json(raw)
    except ValidationError as exc:
        raise _diagnose(raw, exc, expected=event_type.TYPE) from None
    except Exception as exc:  # pragma: no cover - pydantic-core raises ValidationError
        raise DecodeError(DeadLetterReason.DECODE_ERROR, f"{type(exc).__name__}: {exc}") from None


def _check_size(raw: bytes, max_bytes: int) -> None:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise DecodeError(
            DeadLetterReason.DECODE_ERROR, f"expected bytes; got {type(raw).__name__}"
        )
    if len(raw) > max_bytes:
        raise DecodeError(
            DeadLetterReason.OVERSIZE,
            f"payload is {len(raw)} bytes; the limit is {max_bytes}",
        )


def _diagnose(raw: bytes, exc: ValidationError, *, expected: str | None) -> DecodeError:
    """Work out why ``raw`` failed validation (only called on the slow, failing path)."""
    try:
        doc: Any = json.loads(bytes(raw).decode("utf-8"))
    except UnicodeDecodeError as err:
        return DecodeError(DeadLetterReason.NOT_JSON, f"payload is not UTF-8 ({err.reason})")
    except (ValueError, RecursionError) as err:
        return DecodeError(DeadLetterReason.NOT_JSON, f"payload is not JSON ({err})")
    if not isinstance(doc, dict):
        return DecodeError(
            DeadLetterReason.SCHEMA_VIOLATION,
            f"expected a JSON object (a CloudEvent); got a JSON {type(doc).__name__}",
        )
    event_type = doc.get("type")
    if not isinstance(event_type, str):
        return DecodeError(
            DeadLetterReason.SCHEMA_VIOLATION,
            f"expected a string attribute 'type'; got {_short(event_type)}",
        )
    match = _TYPE_RE.match(event_type)
    if match is not None:
        spoken = EVENT_FAMILIES.get(match["family"])
        if spoken is not None and int(match["major"]) != spoken:
            return DecodeError(
                DeadLetterReason.UNKNOWN_MAJOR_VERSION,
                f"event type {event_type!r} has major version {match['major']};"
                f" this gateway speaks v{spoken}",
            )
    if expected is not None and event_type != expected:
        return DecodeError(
            DeadLetterReason.SCHEMA_VIOLATION,
            f"expected an event of type {expected!r}; got {event_type[:200]!r}",
        )
    return DecodeError(DeadLetterReason.SCHEMA_VIOLATION, _summarise(exc))


def _summarise(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        loc_parts = [str(p) for p in err["loc"]]
        if loc_parts and loc_parts[0] in _KNOWN_TYPES:  # the union's tag adds nothing
            loc_parts = loc_parts[1:]
        loc = ".".join(loc_parts) or "(event)"
        got = "" if err["type"] == "missing" else f" (got {_short(err.get('input'))})"
        parts.append(f"{loc}: {err['msg']}{got}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more error(s)")
    return "; ".join(parts)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
