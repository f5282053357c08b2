"""Pattern rules (complex event processing) across the members of a device or a site.

A :class:`Condition` is a test on the readings of the members (series) whose name
matches its glob: ``sensor/metric`` within a device, ``device/sensor/metric`` within a
site. The :class:`PatternDetector` combines conditions within a time window:

- ``all``: every condition held at some time within the last ``within``;
- ``any``: some condition holds now;
- ``sequence``: the conditions became true in the listed order, first to last within
  ``within`` (A followed by B within T), and the last one still holds;
- ``count``: the first condition became true at least ``count`` times within ``within``.

Its signal is one composite condition, which the alarm machine turns into one alarm.
"""

from __future__ import annotations

import fnmatch
import itertools
import operator
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dataflows.detectors.base import US, Signal

__all__ = ["MODES", "OPERATORS", "Condition", "PatternDetector"]

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
MODES = ("all", "any", "sequence", "count")
_MAX_RISES = 1024


@dataclass(frozen=True, slots=True)
class Condition:
    """``member`` (a glob) ``op`` ``value``, e.g. ``*/temperature > 30``."""

    member: str
    op: str
    value: float

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"op must be one of {sorted(OPERATORS)}; got {self.op!r}")

    def matches(self, member: str) -> bool:
        """Whether a member's readings are tested by this condition."""
        return fnmatch.fnmatchcase(member, self.member)

    def holds(self, value: float) -> bool:
        """Whether ``value`` satisfies the condition."""
        return OPERATORS[self.op](value, self.value)

    def __str__(self) -> str:
        return f"{self.member} {self.op} {self.value:g}"


class PatternDetector:
    """Combines conditions over members within a time window (see the module docstring)."""

    def __init__(
        self,
        *,
        conditions: Sequence[Condition],
        mode: str,
        within_us: int,
        count: int = 2,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
        if not conditions:
            raise ValueError("a pattern needs at least one condition")
        if within_us <= 0:
            raise ValueError("within must be > 0")
        if mode == "count" and not 1 <= count <= _MAX_RISES:
            raise ValueError(f"count must be in 1..{_MAX_RISES}; got {count}")
        self.conditions = tuple(conditions)
        self.mode = mode
        self.within_us = within_us
        self.count = count
        n = len(self.conditions)
        # Per condition: which members hold it now, when it last held, its rising edges.
        self._holding: list[set[str]] = [set() for _ in range(n)]
        self._last_true: list[int | None] = [None] * n
        self._rises: list[deque[int]] = [deque(maxlen=_MAX_RISES) for _ in range(n)]

    def relevant(self, member: str) -> bool:
        """Whether any condition looks at ``member``."""
        return any(c.matches(member) for c in self.conditions)

    def update(self, t_us: int, member: str, value: float) -> Signal | None:
        """Take one reading of ``member``; None if no condition looks at it."""
        touched = False
        for i, cond in enumerate(self.conditions):
            if not cond.matches(member):
                continue
            touched = True
            holding = self._holding[i]
            was = bool(holding)
            if cond.holds(value):
                holding.add(member)
            else:
                holding.discard(member)
            if holding or was:  # it held until now at least
                self._last_true[i] = t_us
            if holding and not was:
                self._rises[i].append(t_us)
        if not touched:
            return None
        return self._evaluate(t_us, value)

    def _recent(self, i: int, t_us: int) -> bool:
        last = self._last_true[i]
        return bool(self._holding[i]) or (last is not None and last >= t_us - self.within_us)

    def _evaluate(self, t_us: int, value: float) -> Signal:
        n = len(self.conditions)
        within = self.within_us / US
        if self.mode == "all":
            hit = all(self._recent(i, t_us) for i in range(n))
            text = " and ".join(str(c) for c in self.conditions) + f" within {within:g}s"
        elif self.mode == "any":
            hit = any(self._holding)
            text = " or ".join(str(c) for c in self.conditions)
        elif self.mode == "sequence":
            rises = [r[-1] if r else None for r in self._rises]
            hit = bool(self._holding[-1]) and all(r is not None for r in rises)
            if hit:
                times = [r for r in rises if r is not None]
                ordered = all(a <= b for a, b in itertools.pairwise(times))
                hit = ordered and times[-1] - times[0] <= self.within_us
            text = " then ".join(str(c) for c in self.conditions) + f" within {within:g}s"
        else:
            window = self._rises[0]
            while window and window[0] < t_us - self.within_us:
                window.popleft()
            hit = len(window) >= self.count
            text = f"{self.conditions[0]} {len(window)} times within {within:g}s"
        return Signal(hit, value, None, text if hit else "")

    def snapshot(self) -> dict[str, Any]:
        """Return the state as plain data."""
        return {
            "holding": [sorted(h) for h in self._holding],
            "last_true": list(self._last_true),
            "rises": [list(r) for r in self._rises],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot`."""
        self._holding = [set(h) for h in state["holding"]]
        self._last_true = list(state["last_true"])
        self._rises = [deque(r, maxlen=_MAX_RISES) for r in state["rises"]]
