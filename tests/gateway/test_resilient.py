"""The resilient writer against an in-process fake InfluxDB (httpx.MockTransport)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from contract.errors import StorageError
from gateway.influx.fake import FakeInflux
from gateway.influx.resilient import (
    ResilientWriter,
    WriterStats,
    make_resilient_writer,
    spill_key,
)
from gateway.influx.spill import SpillBuffer
from gateway.influx.writer import V1Writer
from gateway.localstack.services import free_port
from gateway.settings import InfluxSettings
from tests.waiting import wait_for


@pytest.fixture
def influx() -> FakeInflux:
    return FakeInflux()


@pytest.fixture
def make(tmp_path: Path, influx: FakeInflux) -> Iterator[Callable[..., ResilientWriter]]:
    made: list[ResilientWriter] = []

    def build(
        on_rejected: Callable[[str, str], None] | None = None, **overrides: object
    ) -> ResilientWriter:
        settings = InfluxSettings(
            **{  # type: ignore[arg-type]
                "url": "http://influx.invalid",
                "database": "db",
                "batch_size": 100,
                "spill_dir": tmp_path / "spill",
                "spill_after_s": 0.2,
                "drain_backoff_max_s": 0.2,
                "retry_max_s": 1.0,
                **overrides,
            }
        )
        inner = V1Writer(settings, transport=httpx.MockTransport(influx))
        spill = None
        if settings.spill_enabled:
            spill = SpillBuffer.claim(settings.spill_dir, "t", max_bytes=settings.spill_max_bytes)
        writer = ResilientWriter(inner, spill, settings=settings, on_rejected=on_rejected)
        made.append(writer)
        return writer

    yield build
    for writer in made:
        writer.close()


def _lines(start: int, n: int) -> list[str]:
    return [f"m,s=a v={i}i {i}" for i in range(start, start + n)]


def test_writes_go_straight_through_when_influx_answers(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make()
    writer.write(_lines(0, 250))
    assert influx.stored == _lines(0, 250)
    assert influx.requests == 3  # batch_size 100
    stats = writer.stats
    assert stats.points_written == 250
    assert (stats.spill_batches, stats.spilled_points, stats.write_errors) == (0, 0, 0)


def test_5xx_and_429_are_retried_and_retry_after_is_honoured(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    influx.answers = [
        httpx.Response(500, text="engine: error syncing wal"),
        httpx.Response(429, headers={"Retry-After": "0.3"}),
    ]
    writer = make(spill_after_s=2.0)
    started = time.monotonic()
    writer.write(_lines(0, 5))
    assert time.monotonic() - started >= 0.3
    assert influx.stored == _lines(0, 5)
    assert writer.stats.retries == 2
    assert writer.stats.write_errors == 2
    assert writer.stats.spilled_points == 0


def test_outage_spills_then_drains_in_order(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make()
    influx.up = False
    # InfluxDB stays down: the write returns only by giving up after the short retry
    # window (spill_after_s), with everything durably spilled. How long that took is not
    # asserted (a loaded machine is slower); a write waiting for InfluxDB would hang here.
    writer.write(_lines(0, 150))
    assert writer.stats.spill_points == 150
    writer.write(_lines(150, 150))  # behind the spill, without trying InfluxDB first
    assert writer.stats.spill_points == 300
    assert influx.stored == []

    influx.up = True
    wait_for(lambda: writer.stats.spill_batches == 0, 10, "the spill to drain")
    writer.write(_lines(300, 10))  # straight through again
    assert influx.stored == _lines(0, 310)
    stats = writer.stats
    assert stats.spill_bytes == 0
    assert stats.drained_points == 300
    assert stats.points_written == 310
    assert stats.retries > 0
    assert influx.max_in_flight == 1


def test_writes_during_a_drain_queue_behind_it(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    # A slow drain (1,000 points/s) keeps the spill non-empty while we go on writing.
    writer = make(drain_rate=1000.0)
    influx.up = False
    for i in range(5):
        writer.write(_lines(i * 100, 100))
    influx.up = True
    influx.delay_s = 0.005
    wait_for(lambda: writer.stats.drained_points > 0, 10, "the drain to start")
    for i in range(5, 10):
        writer.write(_lines(i * 100, 100))
        assert writer.stats.spill_batches > 0, "a write overtook the spill"
    wait_for(lambda: writer.stats.spill_batches == 0, 20, "the spill to drain")
    assert influx.stored == _lines(0, 1000)
    assert influx.max_in_flight == 1


def test_full_spill_blocks_writes_until_it_drains(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make(spill_max_bytes=1)  # room for one batch at a time
    influx.up = False
    writer.write(_lines(0, 100))
    assert writer.stats.spill_batches == 1

    done = threading.Event()

    def second() -> None:
        writer.write(_lines(100, 100))
        done.set()

    thread = threading.Thread(target=second, daemon=True)
    thread.start()
    wait_for(lambda: writer.stats.spill_full, 5, "the writer to block on a full spill")
    assert not done.wait(0.5), "the write returned although the spill was full"
    assert writer.stats.spill_points == 100  # nothing dropped, nothing added

    influx.up = True
    assert done.wait(10), "the write did not resume once the spill drained"
    thread.join(5)
    wait_for(lambda: writer.stats.spill_batches == 0, 10, "the spill to drain")
    assert influx.stored == _lines(0, 200)
    assert not writer.stats.spill_full
    assert writer.stats.spill_full_seconds > 0.4


def test_bisection_isolates_exactly_the_bad_lines(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    rejected: list[tuple[str, str]] = []
    writer = make(on_rejected=lambda line, error: rejected.append((line, error)))
    lines = _lines(0, 100)
    bad_at = {3, 4, 61, 99}
    for i in bad_at:
        lines[i] = f"m,s=a v=BAD{i} {i}"
    writer.write(lines)

    assert [line for line, _ in rejected] == [lines[i] for i in sorted(bad_at)]
    assert all("400" in error for _, error in rejected)
    good = [line for i, line in enumerate(lines) if i not in bad_at]
    # Every good line is stored; re-sent ones are overwrites in a real InfluxDB.
    assert set(influx.stored) == set(good)
    assert writer.stats.rejected_points == 4
    assert writer.stats.spilled_points == 0
    assert influx.requests < 40  # bisection, not one request per line


def test_bad_lines_in_the_spill_are_isolated_while_draining(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    rejected: list[str] = []
    writer = make(on_rejected=lambda line, _error: rejected.append(line))
    influx.up = False
    lines = _lines(0, 50)
    lines[10] = "m,s=a v=BAD 10"
    writer.write(lines)
    influx.up = True
    wait_for(lambda: writer.stats.spill_batches == 0, 10, "the spill to drain")
    assert rejected == ["m,s=a v=BAD 10"]
    assert set(influx.stored) == set(lines) - {"m,s=a v=BAD 10"}


def test_rejection_handler_may_write_through_the_same_writer(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    # The composition root stores each dead letter through the writer that refused it.
    holder: list[ResilientWriter] = []
    writer = make(on_rejected=lambda line, _e: holder[0].write([f"deadletters v=1 {len(line)}"]))
    holder.append(writer)
    influx.up = False
    writer.write(["m v=BAD 1", "m v=2 2"])  # spilled; found bad while draining
    influx.up = True
    wait_for(lambda: writer.stats.spill_batches == 0, 10, "the spill to drain")
    writer.write(["m v=BAD 3"])  # found bad on the live path
    # Bisection re-sends the good line (an overwrite in InfluxDB): compare without repeats.
    assert list(dict.fromkeys(influx.stored)) == ["m v=2 2", "deadletters v=1 9"]
    assert influx.stored.count("deadletters v=1 9") == 2


def test_not_found_is_spilled_not_dead_lettered(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    rejected: list[str] = []
    writer = make(on_rejected=lambda line, _e: rejected.append(line))
    influx.status_when_up = 404
    writer.write(_lines(0, 10))
    assert rejected == []
    assert writer.stats.spill_points == 10
    influx.status_when_up = 204  # the operator created the database
    wait_for(lambda: writer.stats.spill_batches == 0, 10, "the spill to drain")
    assert influx.stored == _lines(0, 10)


def test_spill_left_by_a_previous_run_is_drained_first(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    first = make()
    influx.up = False
    first.write(_lines(0, 30))
    first.close()  # a stop mid-outage: the spill stays on disk
    assert influx.stored == []

    influx.up = True
    second = make()
    second.write(_lines(30, 10))  # must go behind the adopted spill
    wait_for(lambda: second.stats.spill_batches == 0, 10, "the old spill to drain")
    assert influx.stored == _lines(0, 40)


def test_without_spill_a_long_outage_raises(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make(spill_enabled=False, retry_max_s=0.3)
    influx.up = False
    with pytest.raises(StorageError, match="still failing"):
        writer.write(_lines(0, 1))


def test_make_resilient_writer_claims_a_spill_per_writer(tmp_path: Path) -> None:
    settings = InfluxSettings(url="http://influx.invalid", spill_dir=tmp_path)
    one = make_resilient_writer(settings)
    two = make_resilient_writer(settings)
    try:
        assert len(list(tmp_path.glob("spill-*.lock"))) == 2
        assert one.stats.spill_batches == two.stats.spill_batches == 0
    finally:
        one.close()
        two.close()
    assert list(tmp_path.iterdir()) == []  # empty spills leave nothing behind


def test_drain_rate_is_bounded(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make(drain_rate=1000.0)
    influx.up = False
    writer.write(_lines(0, 800))
    influx.up = True
    wait_for(lambda: writer.stats.drained_points > 0, 5, "the drain to start")
    started = time.monotonic()
    wait_for(lambda: writer.stats.spill_batches == 0, 10, "the spill to drain")
    # 8 batches of 100 at 1,000 points/s: the last 7 wait 0.1 s each at least.
    assert time.monotonic() - started >= 0.6
    assert influx.stored == _lines(0, 800)


_CRASHING_WRITER = """
import sys
from pathlib import Path
from gateway.influx.resilient import make_resilient_writer
from gateway.settings import InfluxSettings

settings = InfluxSettings(
    url=sys.argv[1], database="db", spill_dir=Path(sys.argv[2]), spill_after_s=0, timeout_s=1
)
writer = make_resilient_writer(settings)
writer.write([f"m,s=a v={i}i {i}" for i in range(250)])
print("spilled", flush=True)
sys.stdin.read()  # wait to be killed
"""


def test_a_killed_process_leaves_a_spill_the_next_run_drains(
    tmp_path: Path, influx: FakeInflux
) -> None:
    # Nothing listens on this port: the child's write fails at once and is spilled.
    url = f"http://127.0.0.1:{free_port()}"
    spill_dir = tmp_path / "spill"
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_WRITER, url, str(spill_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"spilled"
    finally:
        child.send_signal(signal.SIGKILL)  # no close(), no clean shutdown
        child.wait(10)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()

    # The next run, writing to the same target, finds the spill and drains it first.
    settings = InfluxSettings(url=url, database="db", spill_dir=spill_dir)
    spill = SpillBuffer.claim(spill_dir, spill_key(settings), max_bytes=1 << 20)
    inner = V1Writer(settings, transport=httpx.MockTransport(influx))
    influx.hold()  # the drainer starts at once: keep its first request waiting
    writer = ResilientWriter(inner, spill, settings=settings)
    try:
        assert writer.stats.spill_points == 250
        writer.write(_lines(250, 10))  # behind the spill, so it returns while held
        influx.release()
        wait_for(lambda: writer.stats.spill_batches == 0, 10, "the spill to drain")
        assert influx.stored == _lines(0, 260)
    finally:
        writer.close()


def test_stats_add_up_across_writers(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    one, two = make(), make()
    one.write(_lines(0, 3))
    two.write(_lines(3, 4))
    total = WriterStats.total([one.stats, two.stats])
    assert total.points_written == 7
    assert total.spill_batches == 0
    assert not total.spill_full
