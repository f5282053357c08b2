"""Spills left by a gateway that wrote everything to one policy, sorted into one per policy.

Before retention policies, every writer of a database spilled under one key
(:func:`~gateway.influx.spillway.spill_key` without a policy), its bodies mixing
readings, aggregates, alarms and dead letters. With policies, each writer drains only
the spill of its own policy, so nothing would ever drain those files.
:func:`reroute_spill` moves their lines, in order, into the spill of each line's policy
(by its measurement, :class:`~gateway.influx.layout.StorageLayout`), where the writers
of this run drain them. A line is appended to its new spill (committed and fsynced)
before its batch leaves the old one: a crash in between writes it twice, which
InfluxDB absorbs (same series and time overwrite).
"""

from __future__ import annotations

import logging
import re

from gateway.influx.layout import MEASUREMENT_CLASS, StorageLayout
from gateway.influx.spill import PackedBatch, SpillBuffer, split_lines
from gateway.influx.spillway import spill_key
from gateway.settings import InfluxSettings

__all__ = ["reroute_spill"]

log = logging.getLogger(__name__)

# The measurement ends at the first comma or space that is not escaped.
_MEASUREMENT = re.compile(rb"(?:[^,\s\\]|\\.)*")


def _policy_of(layout: StorageLayout, line: bytes) -> str | None:
    match = _MEASUREMENT.match(line)
    name = match.group(0).decode("utf-8", "replace") if match else ""
    # A line of no known measurement goes with the raw readings (the default policy).
    return layout.policy(name if name in MEASUREMENT_CLASS else "readings")


def reroute_spill(settings: InfluxSettings) -> int:
    """Move the lines of a spill written without policies into each line's policy spill.

    Returns the lines moved (0 when retention is off, the spill is disabled or there is
    nothing to move). Spills held by a running writer are left alone.
    """
    layout = StorageLayout.of(settings)
    legacy = spill_key(settings)
    if not (layout.active and settings.spill_enabled):
        return 0
    if not any(settings.spill_dir.glob(f"{legacy}-*.sqlite")):
        return 0
    source = SpillBuffer.claim(settings.spill_dir, legacy, max_bytes=settings.spill_max_bytes)
    targets: dict[str | None, SpillBuffer] = {}
    moved = 0
    try:
        while (batch := source.peek(settings.batch_size)) is not None:
            by_policy: dict[str | None, list[bytes]] = {}
            for line in split_lines(batch.body):
                by_policy.setdefault(_policy_of(layout, line), []).append(line)
            for policy, lines in by_policy.items():
                target = targets.get(policy)
                if target is None:
                    target = targets[policy] = SpillBuffer.claim(
                        settings.spill_dir,
                        spill_key(settings, policy),
                        max_bytes=settings.spill_max_bytes,
                    )
                body = b"\n".join(lines) + b"\n"
                # Over the budget if need be: these points were acknowledged long ago.
                target.append(PackedBatch.pack_body(body, len(lines), batch.precision), force=True)
            source.remove(batch)
            moved += batch.points
    finally:
        source.close()
        for target in targets.values():
            target.close()
    if moved:
        log.warning(
            "moved %d spilled points of a run without retention policies into the spills"
            " of their policies (%s); this run drains them",
            moved,
            ", ".join(str(p) for p in targets),
        )
    return moved
