"""Sparkplug B as the simulator publishes it: a minimal protobuf writer and the renderer.

The simulators do not depend on the gateway's generated protobuf code: this writer
encodes the few ``Payload`` and ``Metric`` fields a simulated edge node sends, which
also cross-checks the adapter's decoder in the tests. :mod:`simulators.dialects`
uses :class:`SparkplugRenderer` for ``--dialect sparkplug``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from simulators.varint import varint

if TYPE_CHECKING:  # types only: dialects imports this module
    from simulators.dialects import Reading, Rendered

__all__ = ["SparkplugRenderer", "sparkplug_metric", "sparkplug_payload"]


def _field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def _field_bytes(number: int, data: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(data)) + data


def _field_double(number: int, value: float) -> bytes:
    return varint(number << 3 | 1) + struct.pack("<d", value)


_DOUBLE, _INT64, _STRING = 10, 4, 12


def sparkplug_metric(
    *,
    name: str | None = None,
    alias: int | None = None,
    timestamp_ms: int | None = None,
    datatype: int | None = None,
    double: float | None = None,
    long: int | None = None,
    unit: str | None = None,
) -> bytes:
    """Encode one Sparkplug ``Payload.Metric`` (the fields the simulator uses)."""
    out = b""
    if name is not None:
        out += _field_bytes(1, name.encode())
    if alias is not None:
        out += _field_varint(2, alias)
    if timestamp_ms is not None:
        out += _field_varint(3, timestamp_ms)
    if datatype is not None:
        out += _field_varint(4, datatype)
    if unit:
        value = _field_varint(1, _STRING) + _field_bytes(8, unit.encode())
        out += _field_bytes(9, _field_bytes(1, b"engUnit") + _field_bytes(2, value))
    if long is not None:
        out += _field_varint(11, long)
    if double is not None:
        out += _field_double(13, double)
    return out


def sparkplug_payload(timestamp_ms: int, metrics: Sequence[bytes], seq: int | None) -> bytes:
    """Encode a Sparkplug ``Payload``."""
    out = _field_varint(1, timestamp_ms)
    for metric in metrics:
        out += _field_bytes(2, metric)
    if seq is not None:
        out += _field_varint(3, seq)
    return out


class SparkplugRenderer:
    """One edge node per simulated device, group = site; NBIRTH then NDATA by alias."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[str, str], dict[str, Any]] = {}

    def __call__(self, site: str, device: str, readings: Sequence[Reading]) -> list[Rendered]:
        """Render one event: the node's NBIRTH the first time, NDATA by alias after."""
        t_ms = readings[0][4] // 1000
        node = self.nodes.get((site, device))
        if node is None:
            aliases = {(s, m): i for i, (s, m, _v, _u, _t) in enumerate(readings, start=1)}
            node = self.nodes[(site, device)] = {"seq": 0, "aliases": aliases}
            metrics = [sparkplug_metric(name="bdSeq", datatype=_INT64, long=0, timestamp_ms=t_ms)]
            metrics += [
                sparkplug_metric(
                    name=f"{s}/{m}", alias=aliases[(s, m)], datatype=_DOUBLE, double=v, unit=u
                )
                for s, m, v, u, _t in readings
            ]
            return [(f"spBv1.0/{site}/NBIRTH/{device}", sparkplug_payload(t_ms, metrics, 0), False)]
        node["seq"] = (node["seq"] + 1) % 256
        metrics = []
        for s, m, v, _u, _t in readings:
            alias = node["aliases"].get((s, m))
            metrics.append(
                sparkplug_metric(alias=alias, double=v)
                if alias is not None
                else sparkplug_metric(name=f"{s}/{m}", datatype=_DOUBLE, double=v)
            )
        payload = sparkplug_payload(t_ms, metrics, node["seq"])
        return [(f"spBv1.0/{site}/NDATA/{device}", payload, False)]
