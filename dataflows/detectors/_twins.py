"""What the vectorised banks share to stay bit-identical to their scalar twins.

A bank repeats its scalar detector's floating-point steps element-wise, in the same
order. Two scalar idioms need care: Python's ``max``/``min`` pick an argument by one
comparison (which matters once a value is NaN), and the stuck test's ``log``, where
``np.log`` may differ from :func:`math.log` in the last bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from dataflows.detectors.bank import F64, I64, Bools

__all__ = ["py_max", "py_min", "stuck_runs"]

_NEAR = 1e-9
"""Relative distance to the stuck boundary at which :func:`math.log` decides."""


def py_max(a: Any, b: Any) -> Any:
    """Python's ``max(a, b)``: ``b`` only where ``b > a``."""
    return np.where(b > a, b, a)


def py_min(a: Any, b: Any) -> Any:
    """Python's ``min(a, b)``: ``b`` only where ``b < a``."""
    return np.where(b < a, b, a)


def stuck_runs(
    candidates: Bools, run: I64, repeat: F64, odds: float, log: Callable[[Any], Any] = np.log
) -> Bools:
    """Keep the ``candidates`` whose run of repeats is too unlikely at their repeat rate.

    The scalar test is ``run >= odds / math.log(max(repeat, 1e-3))``. ``log`` computes
    it for every candidate; the (rare) comparisons within a hair of the boundary are
    redone with :func:`math.log`. ``candidates`` is updated in place and returned.
    """
    where = np.flatnonzero(candidates)
    if not len(where):
        return candidates
    r = run[where]
    p = py_max(repeat[where], 1e-3)
    limit = odds / log(p)
    hit = r >= limit
    for i in np.flatnonzero(np.abs(r - limit) <= _NEAR * np.abs(limit)).tolist():
        hit[i] = int(r[i]) >= odds / math.log(float(p[i]))
    candidates[where] = hit
    return candidates
