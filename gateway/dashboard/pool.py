"""A bounded thread pool for the dashboard's blocking work (InfluxDB queries, big JSON).

The event loop never waits on a socket it does not own: the synchronous query code
of :mod:`gateway.views` runs here. Two bounds: ``workers`` threads, and at most
``queued`` calls waiting or running; a call beyond that is refused at once with
:class:`PoolBusy` (the server answers 503) instead of queueing without limit behind a
slow InfluxDB. A slot is given back when the thread finishes, not when the awaiting
request gives up, so a timed-out request cannot let more work pile up than the bound.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from contract.errors import SensorGateError

__all__ = ["BlockingPool", "PoolBusy"]

T = TypeVar("T")


class PoolBusy(SensorGateError):
    """Every slot of the pool is taken: the caller should answer 503 and retry later."""


class BlockingPool:
    """Runs blocking callables on a few threads, with a bound on the calls in flight."""

    def __init__(self, *, workers: int, queued: int, name: str = "dashboard") -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._limit = max(queued, workers)
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Calls waiting or running now."""
        return self._in_flight

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a worker thread and return its result; raise :class:`PoolBusy` if full."""
        with self._lock:
            if self._in_flight >= self._limit:
                raise PoolBusy(f"{self._in_flight} blocking calls in flight; try again shortly")
            self._in_flight += 1
        try:
            future: Future[T] = self._executor.submit(fn)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _f: self._release())
        return await asyncio.wrap_future(future)

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def close(self) -> None:
        """Stop taking work; wait for the calls already running."""
        self._executor.shutdown(wait=True, cancel_futures=True)
