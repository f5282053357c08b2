"""Per-slot state arrays of a detector bank: growth, reset, snapshot and restore.

:class:`SlotArrays` holds the arrays; :class:`SlotBank` is the base of the banks whose
state is one :class:`SlotArrays`, and gives them the slot bookkeeping of the
:class:`~dataflows.detectors.bank.DetectorBank` protocol (everything but ``update`` and
``describe``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Field", "SlotArrays", "SlotBank"]

Field = tuple[npt.DTypeLike, Any, tuple[int, ...]]
"""A state field: dtype, fresh value, shape of one slot's entry (``()`` for a scalar)."""


class SlotArrays:
    """Named arrays with one row per slot, grown with spare capacity.

    ``arrays`` holds the arrays at their capacity (rows beyond :attr:`size` are fresh);
    a bank reads them into locals at the start of each update, since :meth:`grow` may
    replace them.
    """

    __slots__ = ("arrays", "fields", "size")

    def __init__(self, fields: dict[str, Field]) -> None:
        self.fields = fields
        self.size = 0
        self.arrays: dict[str, npt.NDArray[Any]] = {
            name: np.full((0, *tail), fresh, dtype) for name, (dtype, fresh, tail) in fields.items()
        }

    def _capacity(self) -> int:
        return len(next(iter(self.arrays.values()))) if self.arrays else self.size

    def grow(self, size: int) -> None:
        """Make room for slots ``0 .. size-1``; new slots are fresh."""
        if size <= self.size:
            return
        capacity = self._capacity()
        if size > capacity:
            # Amortised growth by a quarter, not doubling: the engine may grow a bank one
            # new series at a time, and doubling leaves up to half of every array empty
            # (a quarter at most here, for about 2.5x the copying while series arrive).
            capacity = max(size, capacity + capacity // 4, 64)
            for name, (dtype, fresh, tail) in self.fields.items():
                grown = np.full((capacity, *tail), fresh, dtype)
                grown[: self.size] = self.arrays[name][: self.size]
                self.arrays[name] = grown
        self.size = size

    def reset(self, slots: npt.NDArray[np.int64]) -> None:
        """Make ``slots`` fresh."""
        for name, (_, fresh, _) in self.fields.items():
            self.arrays[name][slots] = fresh

    def take(self, slots: npt.NDArray[np.int64]) -> None:
        """Keep only ``slots``, renumbered ``0 .. len(slots)-1`` in that order (eviction)."""
        self.arrays = {name: array[slots].copy() for name, array in self.arrays.items()}
        self.size = len(slots)

    def snapshot(self, *, copy: bool = True) -> dict[str, Any]:
        """Return every array trimmed to :attr:`size`: copies, or views (``copy=False``)."""
        state: dict[str, Any] = {"size": self.size}
        for name, array in self.arrays.items():
            state[name] = array[: self.size].copy() if copy else array[: self.size]
        return state

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot`; a field missing or of another shape starts fresh."""
        size = int(state["size"])
        self.arrays = {}
        for name, (dtype, fresh, tail) in self.fields.items():
            array = np.full((size, *tail), fresh, dtype)
            saved = state.get(name)
            if saved is not None:
                saved = np.asarray(saved, dtype)
                if saved.shape == array.shape:
                    array[...] = saved
            self.arrays[name] = array
        self.size = size


class SlotBank:
    """The slot bookkeeping of a bank whose state is one :class:`SlotArrays`.

    A subclass passes its state fields to ``__init__`` and adds ``update`` and
    ``describe``; it reads ``self._state.arrays`` in ``update``.
    """

    def __init__(self, fields: dict[str, Field]) -> None:
        self._state = SlotArrays(fields)

    @property
    def size(self) -> int:
        """Number of slots."""
        return self._state.size

    def grow(self, size: int) -> None:
        """Make room for slots ``0 .. size-1``; new slots start fresh."""
        self._state.grow(size)

    def reset(self, slots: npt.NDArray[np.int64]) -> None:
        """Forget the state of ``slots``."""
        self._state.reset(np.asarray(slots, np.int64))

    def take(self, slots: npt.NDArray[np.int64]) -> None:
        """Keep only ``slots``, renumbered in that order (evicted series leave)."""
        self._state.take(slots)

    def snapshot(self, *, copy: bool = True) -> dict[str, Any]:
        """Return every slot's state as a dict of numpy arrays (and ``size``).

        ``copy=False``: views of the live arrays (see :meth:`SlotArrays.snapshot`).
        """
        return self._state.snapshot(copy=copy)

    def restore(self, state: dict[str, Any]) -> None:
        """Load a :meth:`snapshot` (a field missing or of another shape starts fresh)."""
        self._state.restore(state)
