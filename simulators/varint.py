"""Base-128 varints, least significant group first: protobuf's varint, MQTT's Remaining Length.

One encoder for the two wire formats the simulators write by hand: Sparkplug B payloads
(:mod:`simulators.sparkplug_wire`) and the asyncio fleet's PUBLISH packets
(:mod:`simulators.aio_packets`).
"""

from __future__ import annotations

__all__ = ["varint"]

_U64 = (1 << 64) - 1


def varint(value: int) -> bytes:
    """Return ``value`` as a varint; a negative value as its 64-bit two's complement."""
    value &= _U64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
