"""A shard's recovery snapshot as one bytes object: pickle 5 with its arrays out of band.

Bytewax pickles whatever a stateful step's ``snapshot`` returns, right away, with the
default protocol (4): every numpy array is first copied to a bytes object, then into
the pickle, and the step had already copied each array so that a later batch could not
change what was stored. :func:`encode` pickles the state itself with protocol 5 and
collects the arrays' buffers out of band, then joins header and buffers in one copy;
Bytewax then pickles a single ``bytes`` (one more copy). So the state's arrays may be
the live ones (``ShardProcessor.snapshot(copy=False)``): they are read here, before
the step runs again.

Layout (little endian)::

    b"SGS1" | u32 buffers | u64 header length | u64 length of each buffer
            | pickle header | buffer, buffer, ... (each at an 8-byte aligned offset)

:func:`decode` returns arrays that are read-only views into the blob (no copy); the
restore methods copy what they keep.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

__all__ = ["MAGIC", "decode", "encode", "is_blob"]

MAGIC = b"SGS1"
_COUNT = struct.Struct("<4sIQ")
_ALIGN = 8


def encode(state: Any) -> bytes:
    """Return ``state`` pickled (protocol 5) with its contiguous buffers appended."""
    buffers: list[memoryview] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        try:
            buffers.append(buffer.raw())
        except BufferError:  # not contiguous: it goes in the pickle stream
            return True
        return False

    header = pickle.dumps(state, protocol=5, buffer_callback=out_of_band)
    lengths = [b.nbytes for b in buffers]
    prefix = _COUNT.pack(MAGIC, len(buffers), len(header)) + struct.pack(
        f"<{len(lengths)}Q", *lengths
    )
    parts: list[bytes | memoryview] = [prefix, header]
    at = len(prefix) + len(header)
    for buffer in buffers:
        pad = -at % _ALIGN
        if pad:
            parts.append(b"\0" * pad)
        parts.append(buffer)
        at += pad + buffer.nbytes
    return b"".join(parts)


def is_blob(state: object) -> bool:
    """Whether ``state`` is what :func:`encode` returns (else: a plain-data snapshot)."""
    return isinstance(state, bytes | bytearray) and state[:4] == MAGIC


def decode(blob: bytes) -> Any:
    """Return the state :func:`encode` pickled; its arrays are read-only views of ``blob``."""
    magic, count, header_len = _COUNT.unpack_from(blob)
    if magic != MAGIC:
        raise ValueError(f"not a shard snapshot blob (starts with {bytes(blob[:4])!r})")
    lengths = struct.unpack_from(f"<{count}Q", blob, _COUNT.size)
    at = _COUNT.size + 8 * count
    header = memoryview(blob)[at : at + header_len]
    at += header_len
    views: list[memoryview] = []
    for length in lengths:
        at += -at % _ALIGN
        views.append(memoryview(blob)[at : at + length])
        at += length
    if at != len(blob):
        raise ValueError(f"a shard snapshot blob of {len(blob)} bytes holds {at}")
    return pickle.loads(header, buffers=views)
