"""Foreign names to contract ids: sanitised or refused, and mapped by configuration.

Foreign names break the contract's id rules often: Zigbee2MQTT friendly names may hold
``/``, Sparkplug metric names are paths (``Inputs/Temperature``), Telegraf tag values
anything. An adapter configured with ``ids = "sanitise"`` (the default) replaces each
forbidden character (``/ + # $``, control characters) by ``_``, a trailing backslash
likewise, and shortens a name longer than 128 characters to 119 plus ``~`` and 8 hex
digits of its CRC-32 (so that two long names stay apart). ``ids = "refuse"`` turns such
a name into an adapter error instead. Sanitising is not one-to-one (``a/b`` and ``a_b``
meet): map devices explicitly in ``[adapter.devices]`` where that matters.
"""

from __future__ import annotations

import re
import zlib

from contract.ids import ID_MAX_LENGTH, ID_PATTERN

__all__ = ["IdPolicy", "IdRefused", "sanitise_id"]

_ID = re.compile(ID_PATTERN)
_BAD = re.compile(r"[/+#$\x00-\x1f\x7f-\x9f]")


class IdRefused(ValueError):
    """A foreign name that is not an acceptable id, under ``ids = "refuse"``."""


def sanitise_id(value: str) -> str:
    """Return ``value`` made into an acceptable id (see the module docstring)."""
    out = _BAD.sub("_", value)
    if out.endswith("\\"):
        out = out[:-1] + "_"
    if len(out) > ID_MAX_LENGTH:
        out = f"{out[:119]}~{zlib.crc32(value.encode('utf-8', 'surrogatepass')):08x}"
    return out or "_"


class IdPolicy:
    """Checks or sanitises ids, with a bounded cache (foreign names repeat)."""

    _CACHE_MAX = 100_000

    def __init__(self, mode: str = "sanitise") -> None:
        if mode not in ("sanitise", "refuse"):
            raise ValueError(f"ids must be 'sanitise' or 'refuse'; got {mode!r}")
        self.mode = mode
        self._cache: dict[str, str] = {}

    def __call__(self, kind: str, value: str) -> str:
        """Return the id for ``value``; raise :class:`IdRefused` if it is refused."""
        got = self._cache.get(value)
        if got is not None:
            return got
        if value and len(value) <= ID_MAX_LENGTH and _ID.fullmatch(value) is not None:
            got = value
        elif self.mode == "refuse":
            raise IdRefused(
                f"{kind} name {value!r} is not an acceptable id (1-128 characters, none of"
                " / + # $ or control characters, no trailing backslash); set"
                ' ids = "sanitise" or map it in [adapter.devices]'
            )
        elif not value:
            raise IdRefused(f"{kind} name is empty")
        else:
            got = sanitise_id(value)
        if len(self._cache) >= self._CACHE_MAX:
            self._cache.clear()
        self._cache[value] = got
        return got
