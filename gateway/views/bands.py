"""The expected band of a series, from its stored window aggregates (no per-reading write).

The dashboard draws, around each series, the range its recent past makes typical. For
every chart bucket ``b`` it looks only at the :data:`LOOKBACK` buckets *before* ``b``
(as the detector does: an anomaly does not widen the band at its own time):

- centre: the median of those buckets' means;
- spread: ``sigma² = median(within²) + (1.4826 · MAD(means))²``, where ``within`` is a
  bucket's own spread (the mean ``stddev`` of its stored windows, combined with the
  spread of those windows' means when a bucket holds several), and the MAD term is how
  much the bucket means move from one bucket to the next;
- band: ``centre ± K · sigma`` (:data:`K` = 3), drawn only once :data:`MIN_HISTORY`
  earlier buckets exist.

Everything comes from the ``aggregates`` measurement the gateway writes once per
closed window, at query time. The detector's own band at the moment of an alarm is
stored with the alarm (``band_low``/``band_high``) and drawn apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.views.rows import utc_iso

__all__ = ["LOOKBACK", "MIN_HISTORY", "BandPoint", "Bucket", "K", "trailing_band"]

K = 3.0
"""Half-width of the band in standard deviations."""
LOOKBACK = 30
"""Buckets of history behind each bucket's band."""
MIN_HISTORY = 5
"""Buckets of history needed before a band is drawn."""


@dataclass(frozen=True, slots=True)
class Bucket:
    """One chart bucket of a series' stored aggregates."""

    time: datetime
    mean: float | None
    within: float | None = None
    """The bucket's own standard deviation (None: unknown, taken as 0)."""


@dataclass(frozen=True, slots=True)
class BandPoint:
    """The expected band at one bucket."""

    time: datetime
    series: str
    low: float
    centre: float
    high: float

    def as_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "time": utc_iso(self.time),
            "series": self.series,
            "low": self.low,
            "center": self.centre,
            "high": self.high,
        }


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def trailing_band(
    series: str,
    buckets: Sequence[Bucket],
    *,
    since: datetime | None = None,
    k: float = K,
    lookback: int = LOOKBACK,
    min_history: int = MIN_HISTORY,
) -> list[BandPoint]:
    """Return the band of every bucket at or after ``since`` (see the module docstring).

    ``buckets`` are in time order; empty ones (``mean`` None) are skipped.
    """
    filled = [b for b in buckets if b.mean is not None and math.isfinite(b.mean)]
    out = []
    for i, bucket in enumerate(filled):
        if since is not None and bucket.time < since:
            continue
        history = filled[max(0, i - lookback) : i]
        if len(history) < min_history:
            continue
        means = [b.mean for b in history if b.mean is not None]
        centre = _median(means)
        mad = _median([abs(m - centre) for m in means])
        within = _median([(b.within or 0.0) ** 2 for b in history])
        sigma = math.sqrt(within + (1.4826 * mad) ** 2)
        out.append(BandPoint(bucket.time, series, centre - k * sigma, centre, centre + k * sigma))
    return out
