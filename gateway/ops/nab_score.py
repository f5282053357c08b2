"""NAB's scoring (``calcSweepScore`` and ``calcScoreByThreshold``), profile by profile.

The first 15 % of a file's rows (at most 750) are probationary and not scored; a
detection inside a window earns a weight that falls from about ``tp`` at the window's
start to 0 at its end (a scaled sigmoid), only the best detection of a window counts,
a window without one costs ``fn``; a detection outside every window costs ``fp`` times
a weight that grows from 0 right after a window to 1 three window lengths later (1
before the first window). Raw scores add up over files and are normalised per profile
as NAB does: ``100 * (raw - null) / (perfect - null)`` where the null detector scores
``-fn`` per window and the perfect one ``tp`` per window. :mod:`~gateway.ops.evaluate_nab`
runs the gateway's engine over NAB's files and scores its raises with these.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["PROFILES", "Profile", "detection_rows", "file_score", "normalised"]

_PROBATION = 0.15
_PROBATION_MAX = 0.15 * 5000


@dataclass(frozen=True, slots=True)
class Profile:
    """A NAB scoring profile: weights of a true positive, a false negative, a false positive."""

    name: str
    tp: float
    fn: float
    fp: float


PROFILES: tuple[Profile, ...] = (
    Profile("standard", 1.0, 1.0, 0.11),
    Profile("reward_low_FP_rate", 1.0, 1.0, 0.22),
    Profile("reward_low_FN_rate", 1.0, 2.0, 0.11),
)
"""NAB's three profiles (``config/profiles.json``)."""


def _scaled_sigmoid(position: float) -> float:
    """NAB's scaledSigmoid: about 1 early in a window, 0 at its end, -1 far after it."""
    if position > 3.0:
        return -1.0
    return 2 * (1 / (1 + math.exp(5 * position))) - 1.0


def _sweep(
    t_us: Sequence[int], windows: Sequence[tuple[int, int]], profile: Profile
) -> list[tuple[float, str | None]]:
    """NAB's calcSweepScore: per row its weight and window (``"probationary"`` unscored)."""
    index = {t: i for i, t in enumerate(t_us)}
    pending = list(windows)
    probation = min(math.floor(_PROBATION * len(t_us)), _PROBATION_MAX)
    max_tp = _scaled_sigmoid(-1.0)
    out: list[tuple[float, str | None]] = []
    current: tuple[int, int] | None = None
    cur_right = 0
    cur_width = 0.0
    prev_right: int | None = None
    prev_width = 0.0
    for i, t in enumerate(t_us):
        if pending and t == pending[0][0]:
            current = pending.pop(0)
            cur_right = index[current[1]]
            cur_width = float(cur_right - index[current[0]] + 1)
        name: str | None
        if current is not None:
            weight = _scaled_sigmoid(-(cur_right - i + 1) / cur_width) * profile.tp / max_tp
            name = str(current[0])
        else:
            unit = (
                -1.0
                if prev_right is None
                else _scaled_sigmoid(abs(prev_right - i) / float(prev_width - 1))
            )
            weight = unit * profile.fp
            name = None
        out.append((weight, name if i >= probation else "probationary"))
        if current is not None and t == current[1]:
            prev_right, prev_width, current = i, cur_width, None
    return out


def file_score(
    t_us: Sequence[int],
    scores: Sequence[float] | npt.NDArray[np.float64],
    windows: Sequence[tuple[int, int]],
    profile: Profile,
    threshold: float = 1.0,
) -> float:
    """Return one file's raw NAB score (NAB's calcScoreByThreshold at ``threshold``)."""
    rows = [
        (s, w, n)
        for s, (w, n) in zip(scores, _sweep(t_us, windows, profile), strict=True)
        if n != "probationary"
    ]
    parts: dict[str | None, float] = {None: 0.0}
    for _, _, name in rows:
        if name is not None:
            parts[name] = -profile.fn
    for s, w, name in sorted(rows, key=lambda r: -r[0]):
        if s < threshold:
            break
        if name is None:
            parts[None] += w
        else:
            parts[name] = max(parts[name], w)
    return sum(parts.values())


def detection_rows(
    t_us: npt.NDArray[np.int64], detections_us: Iterable[int]
) -> npt.NDArray[np.float64]:
    """Row scores: 1.0 at the first row at or after each detection's time, else 0."""
    scores = np.zeros(len(t_us))
    rows = np.searchsorted(t_us, np.asarray(list(detections_us), np.int64), side="left")
    scores[rows[rows < len(t_us)]] = 1.0
    return scores


def normalised(raw: float, windows: int, profile: Profile) -> float | None:
    """NAB's normalised score of a raw total over ``windows`` windows (None for none)."""
    if windows == 0:
        return None
    null, perfect = -profile.fn * windows, profile.tp * windows
    return 100 * (raw - null) / (perfect - null)
