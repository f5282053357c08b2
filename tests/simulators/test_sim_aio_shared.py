"""What a fleet's connections share on the loop (FleetIo) and its heap keeping (HeapKeeper)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from simulators.aio_heap import YOUNG_THRESHOLD, HeapKeeper
from simulators.aio_shared import FleetIo


class _Conn:
    def __init__(self, alive: bool = True) -> None:
        self.alive = alive
        self.housekept = 0
        self.writes = 0

    def write_pending(self) -> None:
        self.writes += 1

    def housekeep(self) -> bool:
        self.housekept += 1
        return self.alive


def test_the_sweep_housekeeps_each_connection_once_per_period_and_ends_dead_ones():
    async def main() -> None:
        io = FleetIo(housekeeping_s=4.0, tick_s=1.0)
        conns = [_Conn() for _ in range(10)]
        keeps = [asyncio.ensure_future(io.keep(c)) for c in conns]
        await asyncio.sleep(0)  # every keep registered
        io.close()  # the test drives the sweep itself
        assert io.kept == 10
        assert [io.sweep_once() for _ in range(4)] == [3, 3, 3, 3]  # ceil(10 * 1 / 4)
        assert sorted(c.housekept for c in conns) == [1] * 8 + [2, 2]
        conns[0].alive = False
        for _ in range(4):
            io.sweep_once()
        await asyncio.sleep(0)
        assert keeps[0].done()
        assert keeps[0].exception() is None
        assert io.kept == 9
        for task in keeps[1:]:
            task.cancel()  # as aiomqtt does when the socket closes
        await asyncio.gather(*keeps[1:], return_exceptions=True)
        assert io.kept == 0
        assert io.sweep_once() == 0

    asyncio.run(main())


def test_writes_queued_in_one_pass_of_the_loop_are_flushed_in_one_callback():
    async def main() -> None:
        io = FleetIo(housekeeping_s=10.0)
        conns = [_Conn() for _ in range(5)]
        for c in conns:
            io.want_write(c)
        assert [c.writes for c in conns] == [0] * 5  # not yet: at the next pass
        await asyncio.sleep(0)
        assert [c.writes for c in conns] == [1] * 5
        assert io.flushes == 1
        assert io.on_loop()
        assert not await asyncio.to_thread(io.on_loop)

    asyncio.run(main())


def test_housekeeping_period_must_be_positive():
    async def main() -> None:
        with pytest.raises(ValueError, match="housekeeping_s"):
            FleetIo(housekeeping_s=0)

    asyncio.run(main())


def test_the_heap_keeper_freezes_then_gives_everything_back():
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    keeper = HeapKeeper()
    kept = [object() for _ in range(10)]
    keeper.settle()
    assert gc.get_freeze_count() > 0
    keeper.seal()
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    keeper.release()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
    assert kept


def test_a_disabled_heap_keeper_changes_nothing():
    before = gc.get_threshold()
    keeper = HeapKeeper(enabled=False)
    keeper.settle()
    keeper.seal()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
    keeper.release()


def test_usage_tells_cpu_from_waiting_for_a_cpu():
    from simulators.process import Usage

    earlier = Usage.now()
    sum(range(100_000))
    since = Usage.now().since(earlier)
    assert since["cpu_s"] >= 0
    assert since["run_queue_wait_s"] >= 0  # Linux: read from /proc/self/task/*/schedstat
    assert "run_queue_wait_s" not in Usage.now().since(Usage(0.0, 0.0, None))
