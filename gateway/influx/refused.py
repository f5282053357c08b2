"""Finding the points InfluxDB refuses in a body it refused as a whole.

A 4xx for the data (400, 413, 422) names one bad point at best; :func:`isolate_refused`
bisects the lines (cut by :func:`~gateway.influx.spill.split_lines`, which respects
quoted string fields), posting each half again, down to the lines refused on their own.
Re-sending the good part is safe: influxd 1.x stores the good points of a partial
write, and writing a point again overwrites it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from contract.errors import StorageError
from gateway.influx.writer import BadPointsError, Precision

__all__ = ["isolate_refused"]

Post = Callable[[bytes, int, Precision, float], None]
"""Post a body of ``lines`` lines in a precision, retrying transient errors for a time."""


def isolate_refused(
    lines: list[bytes],
    precision: Precision,
    retry_for: float,
    known: BadPointsError | None,
    *,
    post: Post,
    stop: threading.Event,
) -> list[tuple[str, str]]:
    """Bisect ``lines`` down to those InfluxDB refuses; return them with the error.

    ``known`` is the refusal of ``lines`` as a whole, when already had. Raises
    :class:`StorageError` if ``stop`` is set meanwhile (the writer is closing).
    """
    if known is None:
        try:
            post(b"\n".join(lines) + b"\n", len(lines), precision, retry_for)
            return []
        except BadPointsError as exc:
            known = exc
    if len(lines) <= 1:
        return [(line.decode("utf-8", "replace"), str(known)) for line in lines]
    if stop.is_set():
        raise StorageError("writer closed while isolating bad points") from known
    mid = len(lines) // 2
    halves = (lines[:mid], lines[mid:])
    return [
        refused
        for half in halves
        for refused in isolate_refused(half, precision, retry_for, None, post=post, stop=stop)
    ]
