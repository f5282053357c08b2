"""The pipelined writer against an in-process fake InfluxDB (httpx.MockTransport)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from contract.errors import StorageError
from gateway.influx.fake import FakeInflux
from gateway.influx.pipeline import (
    FlushTimeoutError,
    PipelinedWriter,
    WriterClosedError,
    make_pipelined_writer,
)
from gateway.influx.spill import SpillBuffer
from gateway.influx.stats import PipelineStats, WriterStats
from gateway.influx.writer import V1Writer
from gateway.settings import InfluxSettings
from tests.waiting import wait_for


@pytest.fixture
def influx() -> Iterator[FakeInflux]:
    fake = FakeInflux(hold_timeout_s=20)
    yield fake
    fake.release()  # never leave a sender stuck at the gate


@pytest.fixture
def make(tmp_path: Path, influx: FakeInflux) -> Iterator[Callable[..., PipelinedWriter]]:
    made: list[PipelinedWriter] = []

    def build(
        on_rejected: Callable[[str, str], None] | None = None, **overrides: object
    ) -> PipelinedWriter:
        settings = InfluxSettings(
            **{  # type: ignore[arg-type]
                "url": "http://influx.invalid",
                "database": "db",
                "batch_size": 100,
                "spill_dir": tmp_path / "spill",
                "spill_after_s": 0.2,
                "drain_backoff_max_s": 0.2,
                "retry_max_s": 0.3,
                **overrides,
            }
        )
        inner = V1Writer(settings, transport=httpx.MockTransport(influx))
        spill = None
        if settings.spill_enabled:
            spill = SpillBuffer.claim(
                settings.spill_dir, f"t{len(made)}", max_bytes=settings.spill_max_bytes
            )
        writer = PipelinedWriter(inner, spill, settings=settings, on_rejected=on_rejected)
        made.append(writer)
        return writer

    yield build
    for writer in made:
        writer.close(timeout=5)


def _lines(start: int, n: int, tag: str = "a") -> list[str]:
    return [f"m,s={tag} v={i}i {i}" for i in range(start, start + n)]


def _body(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def submit(writer: PipelinedWriter, lines: list[str]) -> int:
    return writer.submit(_body(lines), len(lines))


def test_bodies_are_coalesced_into_requests_of_about_batch_size(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make()
    influx.hold()  # every body is submitted within the linger: batches of <= 100 lines
    seqs = [submit(writer, _lines(i * 30, 30)) for i in range(10)]
    assert seqs == list(range(1, 11))
    influx.release()
    assert writer.flush() == 10
    # Three bodies of 30 make a request; a fourth would pass batch_size (100).
    assert sorted(influx.request_lines) == [30, 90, 90, 90]
    assert sorted(influx.stored) == sorted(_lines(0, 300))
    assert set(influx.precisions) == {"u"}
    stats = writer.stats
    assert (stats.points_written, stats.durable_through, stats.submitted_through) == (300, 10, 10)


def test_a_lone_body_leaves_when_no_sender_is_busy(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make()
    submit(writer, _lines(0, 10))  # far below batch_size, but no sender is busy: 20 ms
    wait_for(lambda: writer.durable_through == 1, 5, "the lone body to be stored")
    assert influx.request_lines == [10]


def test_a_full_batch_leaves_without_waiting_for_flush(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make()
    influx.hold()
    submit(writer, _lines(0, 10))  # leaves after the linger: no sender was busy
    wait_for(lambda: influx.held == 1, 5, "the first request at the server")
    submit(writer, _lines(10, 60))  # a sender is busy: waits for more
    assert writer.stats.queued_lines == 60
    submit(writer, _lines(70, 60))  # 120 pending: the first of them goes now
    wait_for(lambda: influx.held == 2, 5, "the full batch at the server")
    assert writer.stats.queued_lines == 60  # the second waits for more, or a flush
    influx.release()
    writer.flush()
    assert writer.durable_through == 3
    assert sorted(influx.request_lines) == [10, 60, 60]


def test_at_most_max_in_flight_requests(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make(max_in_flight=2)
    influx.hold()
    for i in range(8):
        submit(writer, _lines(i * 100, 100))
    wait_for(lambda: influx.held == 2, 5, "two requests at the server")
    # The two senders are busy; the other six requests wait in the queue.
    wait_for(lambda: writer.stats.queued_lines == 600, 5, "the rest to stay queued")
    assert writer.stats.in_flight == 2
    assert writer.durable_through == 0
    influx.release()
    writer.flush()
    assert influx.max_in_flight == 2
    assert sorted(influx.stored) == sorted(_lines(0, 800))


def test_submit_does_not_wait_for_hung_requests_until_the_queue_is_full(  # type: ignore[no-untyped-def]
    make, influx: FakeInflux
) -> None:
    writer = make(max_in_flight=2, max_pending_lines=500)
    influx.hold()
    submit(writer, _lines(0, 100))
    submit(writer, _lines(100, 100))
    wait_for(lambda: influx.held == 2, 5, "two requests hanging at the server")
    for i in range(2, 7):  # 500 lines queued behind the two hanging requests
        submit(writer, _lines(i * 100, 100))
    assert writer.stats.queued_lines == 500
    assert not writer.stats.submit_blocked

    returned = threading.Event()

    def one_more() -> None:
        submit(writer, _lines(700, 100))
        returned.set()

    thread = threading.Thread(target=one_more, daemon=True)
    thread.start()
    wait_for(lambda: writer.stats.submit_blocked, 5, "submit to block on the full queue")
    assert not returned.is_set()
    influx.release()
    assert returned.wait(10), "submit did not resume once the queue had room"
    thread.join(5)
    writer.flush()
    assert sorted(influx.stored) == sorted(_lines(0, 800))
    assert writer.stats.submit_blocked_seconds > 0


def test_flush_covers_exactly_what_was_submitted_before_it(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make()
    influx.hold()
    first = submit(writer, _lines(0, 10))
    flushed: list[int] = []
    flusher = threading.Thread(target=lambda: flushed.append(writer.flush()), daemon=True)
    flusher.start()
    wait_for(lambda: influx.held == 1, 5, "the flushed body at the server")
    second = submit(writer, _lines(10, 10))  # after the flush began: not its business
    assert not flushed, "flush returned before its body was stored"
    assert writer.durable_through == 0

    influx.release()
    flusher.join(5)
    assert flushed == [first]
    # The second left once the sender was back (nothing else busy), or is about to.
    assert writer.durable_through in (first, second)
    assert influx.stored[:10] == _lines(0, 10)
    assert writer.flush() == second
    assert writer.durable_through == second
    assert influx.stored == _lines(0, 20)


def test_flush_with_a_timeout_raises_a_typed_error(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make()
    influx.hold()
    seq = submit(writer, _lines(0, 10))
    with pytest.raises(FlushTimeoutError, match="not durable in time") as info:
        writer.flush(timeout=0.05)
    assert isinstance(info.value, StorageError)
    assert (info.value.target, info.value.durable_through) == (seq, 0)
    influx.release()
    writer.flush()
    assert influx.stored == _lines(0, 10)


def test_durable_through_is_monotonic(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make(max_in_flight=3, spill_after_s=2.0)
    influx.delay_s = 0.002
    influx.answers = [httpx.Response(500, text="engine: error syncing wal")] * 3
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(writer.durable_through)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for i in range(60):
        submit(writer, _lines(i * 40, 40))
        if i % 7 == 0:
            writer.flush()
    last = writer.flush()
    done.set()
    watcher.join(5)
    assert seen == sorted(seen)
    assert writer.durable_through == last == 60
    assert sorted(influx.stored) == sorted(_lines(0, 2400))
    assert writer.stats.retries >= 3


def test_transient_failures_are_retried_without_spilling(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make(spill_after_s=2.0)
    influx.answers = [
        httpx.Response(500, text="engine: error syncing wal"),
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(503),
    ]
    submit(writer, _lines(0, 50))
    writer.flush()
    assert influx.stored == _lines(0, 50)
    stats = writer.stats
    assert (stats.retries, stats.write_errors, stats.spilled_points) == (3, 3, 0)


def test_an_outage_is_spilled_then_drained_in_order(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make(max_in_flight=1)
    influx.up = False
    for i in range(3):
        submit(writer, _lines(i * 100, 100))
    writer.flush()  # returns once everything is durable in the spill
    assert writer.stats.spill_points == 300
    assert writer.durable_through == 3
    assert influx.stored == []
    for i in range(3, 5):  # behind the spill, without trying InfluxDB first
        submit(writer, _lines(i * 100, 100))
    writer.flush()
    assert writer.stats.spill_points == 500

    influx.up = True
    wait_for(lambda: writer.stats.spill_batches == 0, 10, "the spill to drain")
    submit(writer, _lines(500, 10))  # straight through again
    writer.flush()
    assert influx.stored == _lines(0, 510)
    stats = writer.stats
    assert (stats.spilled_points, stats.drained_points, stats.points_written) == (500, 500, 510)
    assert influx.max_in_flight == 1


def test_with_two_in_flight_an_outage_still_loses_nothing(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make(max_in_flight=2, drain_rate=10_000.0)
    influx.up = False
    for i in range(6):
        submit(writer, _lines(i * 100, 100))
    writer.flush()
    assert writer.stats.spill_points == 600
    influx.up = True
    for i in range(6, 9):
        submit(writer, _lines(i * 100, 100))
    writer.flush()
    wait_for(lambda: writer.stats.spill_batches == 0, 10, "the spill to drain")
    assert sorted(influx.stored) == sorted(_lines(0, 900))
    assert influx.max_in_flight <= 2


def test_bad_lines_are_isolated_and_reported_once(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    rejected: list[tuple[str, str]] = []
    writer = make(on_rejected=lambda line, error: rejected.append((line, error)))
    bodies = [_lines(0, 30), _lines(30, 30), _lines(60, 30)]
    bodies[0][3] = "m,s=a v=BAD3 3"
    bodies[2][29] = "m,s=a v=BAD89 89"
    bodies[2][0] = 'm,s=a fault="BAD\nwith a newline" 60'  # a string field may hold one
    for lines in bodies:
        submit(writer, lines)
    writer.flush()  # one request of 90 lines, refused, bisected

    bad = [bodies[0][3], bodies[2][0], bodies[2][29]]
    assert [line for line, _ in rejected] == bad
    assert all("400" in error for _, error in rejected)
    good = {line for lines in bodies for line in lines} - set(bad)
    assert set(influx.stored) == good
    assert writer.stats.rejected_points == 3
    assert writer.durable_through == 3


def test_on_rejected_may_write_through_the_same_writer(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    holder: list[PipelinedWriter] = []
    writer = make(on_rejected=lambda line, _e: holder[0].write([f"deadletters v=1 {len(line)}"]))
    holder.append(writer)
    submit(writer, ["m v=BAD 1", "m v=2 2"])
    writer.flush()
    assert set(influx.stored) == {"m v=2 2", "deadletters v=1 9"}
    assert influx.precisions[-1] == "ns"  # the dead letter, written inline in ns


def test_without_spill_a_failure_stops_the_mark_and_flush_raises(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make(spill_enabled=False, retry_max_s=0.2)
    submit(writer, _lines(0, 10))
    writer.flush()
    influx.up = False
    failed = submit(writer, _lines(10, 10))
    with pytest.raises(StorageError, match="still failing"):
        writer.flush()
    influx.up = True
    later = submit(writer, _lines(20, 10))
    assert writer.flush() == later  # the error was reported once
    assert writer.durable_through == failed - 1  # but the mark never passes a lost body


def test_bodies_keep_their_precision_through_the_spill(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make(max_in_flight=1)  # one sender: the spill's order is the submission order
    influx.up = False
    submit(writer, _lines(0, 10))  # writer's precision: u
    writer.write(_lines(10, 10, tag="ns"))  # write(): nanoseconds
    writer.submit(_body(_lines(20, 10, tag="s")), 10, precision="s")
    writer.flush()
    assert writer.stats.spill_batches == 3
    influx.up = True
    wait_for(lambda: writer.stats.spill_batches == 0, 10, "the spill to drain")
    # Never coalesced across precisions.
    assert influx.precisions == ["u", "ns", "s"]
    assert influx.stored == _lines(0, 10) + _lines(10, 10, "ns") + _lines(20, 10, "s")


def test_empty_bodies_are_durable_at_once(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make()
    assert writer.submit(b"", 0) == 1
    assert writer.durable_through == 1
    assert writer.flush() == 1
    assert influx.requests == 0


def test_close_flushes_then_refuses_and_stops_its_threads(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    writer = make()
    submit(writer, _lines(0, 10))
    writer.close()
    assert influx.stored == _lines(0, 10)
    assert not any(t.is_alive() for t in threading.enumerate() if t.name.startswith("influx-"))
    with pytest.raises(WriterClosedError):
        submit(writer, _lines(10, 1))
    with pytest.raises(WriterClosedError):
        writer.flush()
    writer.close()  # twice is fine


def test_stats_are_writer_stats_for_the_metrics_endpoint(make, influx: FakeInflux) -> None:  # type: ignore[no-untyped-def]
    one, two = make(), make()
    submit(one, _lines(0, 3))
    submit(two, _lines(3, 4))
    one.flush()
    two.flush()
    assert isinstance(one.stats, PipelineStats)
    total = WriterStats.total([one.stats, two.stats])
    assert total.points_written == 7
    assert not total.spill_full


def test_make_pipelined_writer_claims_its_own_spill(tmp_path: Path) -> None:
    settings = InfluxSettings(url="http://influx.invalid", spill_dir=tmp_path)
    writer = make_pipelined_writer(settings)
    try:
        assert writer.precision == "u"
        assert writer.max_in_flight == settings.max_in_flight == 2
        assert len(list(tmp_path.glob("spill-*.lock"))) == 1
    finally:
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_drain_waits_double_to_the_cap_between_half_and_all_of_it() -> None:
    from tenacity import RetryCallState

    from gateway.influx.spillway import drain_wait as _drain_wait

    wait = _drain_wait(1.0)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (40, 1.0)]:
        state = RetryCallState(None, None, (), {})
        state.attempt_number = attempt
        delays = [wait(state) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling + 1e-9 for d in delays)
        assert len(set(delays)) > 1  # jittered
    state = RetryCallState(None, None, (), {})
    busy = StorageError("busy", retry_after=7.0)
    state.set_exception((StorageError, busy, None))
    assert wait(state) == 7.0  # the server's Retry-After, when longer
