"""Retention policies on InfluxDB 1.x: compare what the server has with what is configured.

:func:`plan` takes the rows of ``SHOW RETENTION POLICIES ON "db"`` and the policies of a
:class:`~gateway.influx.layout.StorageLayout`, and says for each policy what to do:
nothing, ``CREATE RETENTION POLICY`` or ``ALTER RETENTION POLICY`` (a duration that
differs, or the raw policy not being the DEFAULT). It is pure: :mod:`gateway.influx.setup`
runs the statements (``sensorgate influx setup``, and the gateway at start).

>>> from gateway.influx.layout import RetentionPolicy
>>> rows = [{"name": "autogen", "duration": "0s", "shardGroupDuration": "168h0m0s",
...          "replicaN": 1, "default": True}]
>>> [c.statement for c in plan("db", (RetentionPolicy("raw", "30d", default=True),), rows)]
['CREATE RETENTION POLICY "raw" ON "db" DURATION 30d REPLICATION 1 DEFAULT']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gateway.influx.layout import RetentionPolicy
from gateway.influx.query import quote_ident

__all__ = ["Change", "go_duration_hours", "plan"]

_GO_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")


def go_duration_hours(text: str) -> float | None:
    """Hours of a duration as influxd prints it (``720h0m0s``); None for ``0s`` (for ever)."""
    m = _GO_DURATION.match(text or "")
    if m is None or not text:
        raise ValueError(f"not a duration as influxd prints one: {text!r}")
    hours = int(m.group(1) or 0) + int(m.group(2) or 0) / 60 + float(m.group(3) or 0) / 3600
    return None if hours == 0 else hours


def _default_shard_hours(hours: int | None) -> int:
    """Return the shard group duration influxd picks for a retention of ``hours``."""
    if hours is None or hours > 180 * 24:
        return 7 * 24
    return 1 if hours < 48 else 24


def _shown(hours: float | None) -> str:
    if hours is None:
        return "INF"
    if hours % 24 == 0:
        return f"{int(hours // 24)}d"
    return f"{hours:g}h"


@dataclass(frozen=True, slots=True)
class Change:
    """What one policy needs: nothing (``ok``), to be created, or to be altered."""

    policy: RetentionPolicy
    action: Literal["ok", "create", "alter"]
    detail: str
    statement: str | None = None
    """The InfluxQL statement that makes it so (None when nothing is needed)."""


def plan(
    database: str, wanted: Iterable[RetentionPolicy], rows: Iterable[Mapping[str, Any]]
) -> list[Change]:
    """Return, for each wanted policy, what must change on the server (see the module)."""
    found = {str(r["name"]): r for r in rows}
    on = f"ON {quote_ident(database)}"
    changes = []
    for policy in wanted:
        name = quote_ident(policy.name)
        default = " DEFAULT" if policy.default else ""
        row = found.get(policy.name)
        if row is None:
            changes.append(
                Change(
                    policy,
                    "create",
                    f"{policy.duration}{' (default)' if policy.default else ''}",
                    f"CREATE RETENTION POLICY {name} {on} DURATION {policy.duration}"
                    f" REPLICATION 1{default}",
                )
            )
            continue
        have = go_duration_hours(str(row.get("duration", "0s")))
        want = policy.hours
        parts, why = [], []
        if have != want:
            parts.append(f"DURATION {policy.duration}")
            shard = go_duration_hours(str(row.get("shardGroupDuration", "0s")))
            if want is not None and shard is not None and shard > want:
                # influxd refuses a duration below the shard group duration.
                parts.append(f"SHARD DURATION {_default_shard_hours(want)}h")
            why.append(f"duration {_shown(have)} -> {policy.duration}")
        if policy.default and not row.get("default"):
            parts.append("DEFAULT")
            why.append("made the default")
        if not parts:
            note = " (default)" if row.get("default") else ""
            changes.append(Change(policy, "ok", f"{policy.duration}{note}"))
            continue
        changes.append(
            Change(
                policy,
                "alter",
                ", ".join(why),
                f"ALTER RETENTION POLICY {name} {on} {' '.join(parts)}",
            )
        )
    return changes
