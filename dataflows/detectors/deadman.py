"""Deadman: a device or a series that has gone silent for too long."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from contract.alarms import AlarmDetail
from dataflows.cadence import Cadence
from dataflows.detectors.base import US, Signal

__all__ = ["CadenceView", "DeadmanDetector"]


@dataclass(frozen=True, slots=True)
class CadenceView:
    """A learnt cadence handed to a detector: the median interval and how many it saw."""

    median_us: float
    count: int


class DeadmanDetector:
    """Active when nothing was seen for the silence; checked by :meth:`check` on a timer.

    The silence is fixed (``silence_us``) or, with ``silence_us=None`` ("auto"),
    ``factor`` times the median interval between the messages seen, at least
    ``floor_us`` (``initial_us`` before the first interval). The cadence is learnt
    here (``learn=True``, a :class:`~dataflows.cadence.Cadence`) or handed to
    :meth:`check` and :meth:`due_us` by the caller, which learns it in arrays for many
    devices at once (:class:`~dataflows.cadence.CadenceArrays`).

    Times are in one time base: ``seen`` takes the time of an arrival, ``check`` takes
    now. The gateway passes arrival times and its clock; offline detection passes the
    time of the data (a gap in the file is silence).
    """

    __slots__ = ("cadence", "factor", "floor_us", "initial_us", "last_us", "silence_us")

    def __init__(
        self,
        *,
        silence_us: int | None,
        factor: float = 3.0,
        floor_us: int = 30 * US,
        initial_us: int = 86_400 * US,
        learn: bool = True,
        last_us: int | None = None,
    ) -> None:
        if silence_us is not None and silence_us <= 0:
            raise ValueError(f"silence must be > 0; got {silence_us} us")
        if silence_us is None and (factor < 1 or floor_us <= 0 or initial_us <= 0):
            raise ValueError("auto silence needs factor >= 1 and a positive floor and initial")
        self.silence_us = silence_us
        self.factor = factor
        self.floor_us = floor_us
        self.initial_us = initial_us
        self.cadence = Cadence() if silence_us is None and learn else None
        self.last_us = last_us

    @property
    def auto(self) -> bool:
        """Whether the silence is learnt from the cadence."""
        return self.silence_us is None

    def _view(self, given: CadenceView | None) -> CadenceView | None:
        if given is not None or self.cadence is None:
            return given
        return CadenceView(self.cadence.median_us, self.cadence.count)

    def silence(self, cadence: CadenceView | None = None) -> int:
        """Return the silence allowed now (``cadence``: the caller's, if not learning)."""
        if self.silence_us is not None:
            return self.silence_us
        view = self._view(cadence)
        if view is None or view.count <= 0 or view.median_us != view.median_us:
            return self.initial_us
        # auto_silence_us for one device, in plain Python: this runs per message.
        return max(self.floor_us, math.ceil(self.factor * view.median_us))

    def note(self, t_us: int, event_us: int | None = None) -> None:
        """Something arrived at ``t_us`` (its newest reading at ``event_us``): alive."""
        if self.cadence is not None:
            self.cadence.observe(t_us, event_us)
        if self.last_us is None or t_us > self.last_us:
            self.last_us = t_us

    def seen(
        self, t_us: int, event_us: int | None = None, cadence: CadenceView | None = None
    ) -> Signal:
        """:meth:`note` the arrival; return the (inactive) signal with the silence."""
        self.note(t_us, event_us)
        return Signal(False, None, self.silence(cadence) / US)

    def due_us(self, cadence: CadenceView | None = None) -> int | None:
        """When silence starts to count as dead (None before anything was seen)."""
        return None if self.last_us is None else self.last_us + self.silence(cadence)

    def check(self, now_us: int, cadence: CadenceView | None = None) -> Signal | None:
        """Return an active signal if silent for the silence at ``now_us``."""
        if self.last_us is None:
            return None
        quiet = now_us - self.last_us
        silence = self.silence(cadence)
        if quiet < silence:
            return None
        why = ""
        view = self._view(cadence) if self.auto else None
        if view is not None and view.count:
            why = (
                f" (allowed {silence / US:g}s: {self.factor:g} x its median interval"
                f" {view.median_us / US:g}s, at least {self.floor_us / US:g}s)"
            )
        elif self.auto:
            why = f" (allowed {silence / US:g}s: no interval learnt yet)"
        return Signal(True, quiet / US, silence / US, f"silent for {quiet / US:g}s{why}")

    def detail(self, cadence: CadenceView | None = None) -> AlarmDetail:
        """Return what the silence is judged on: the learnt cadence, the silence allowed."""
        view = self._view(cadence) if self.auto else None
        learnt = view is not None and view.count > 0
        return AlarmDetail(
            component="silence",
            cadence_s=view.median_us / US if learnt and view is not None else None,
            silence_s=self.silence(cadence) / US,
            history_readings=view.count if view is not None else None,
        )

    def update(self, t_us: int, value: float) -> Signal:
        """Take a reading: the series is alive (the Detector protocol)."""
        return self.seen(t_us)

    def snapshot(self) -> dict[str, Any]:
        """Return the state as plain data."""
        doc: dict[str, Any] = {"last": self.last_us}
        if self.cadence is not None:
            doc["cadence"] = self.cadence.snapshot()
        return doc

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot`."""
        self.last_us = state["last"]
        if self.cadence is not None and state.get("cadence") is not None:
            self.cadence.restore(state["cadence"])
