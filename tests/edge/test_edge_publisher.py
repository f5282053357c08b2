"""The publisher drains oldest first, at the configured rate, deleting only on PUBACK."""

from __future__ import annotations

from pathlib import Path

from edge.clock import FakeClock
from edge.outbox import Outbox
from edge.publisher import MAX_PENDING_STATUS, Publisher, TokenBucket
from edge.transport import FakeTransport


def filled(tmp_path: Path, n: int) -> Outbox:
    box = Outbox(tmp_path / "o.db")
    for i in range(n):
        box.put("t", str(i).encode())
    return box


def test_oldest_first_and_deleted_only_after_puback(tmp_path: Path) -> None:
    box = filled(tmp_path, 5)
    transport = FakeTransport(auto_ack=False)
    pub = Publisher(transport, box, max_rate=0, max_inflight=3)
    pub.step()
    assert [p for _t, p, _r in transport.sent] == [b"0", b"1", b"2"]
    assert box.depth == 5  # nothing acknowledged yet: nothing deleted
    pub.step()
    assert len(transport.sent) == 3  # the in-flight window is full
    transport.ack_all()
    pub.step()
    assert box.depth == 2
    assert [p for _t, p, _r in transport.sent] == [b"0", b"1", b"2", b"3", b"4"]
    transport.ack_all()
    pub.step()
    assert box.depth == 0
    assert pub.stats().acked == 5


def test_nothing_is_sent_while_disconnected(tmp_path: Path) -> None:
    box = filled(tmp_path, 3)
    transport = FakeTransport(is_connected=False)
    pub = Publisher(transport, box, max_rate=0)
    pub.step()
    assert transport.sent == []
    transport.is_connected = True
    pub.step()
    pub.step()
    assert box.depth == 0


def test_backlog_drains_at_the_maximum_rate(tmp_path: Path) -> None:
    box = filled(tmp_path, 100)
    clock = FakeClock()
    transport = FakeTransport()
    pub = Publisher(transport, box, max_rate=20, max_inflight=50, clock=clock)
    steps = 0
    while box.depth:
        pub.step()
        clock.advance(0.05)
        steps += 1
    # 100 events at 20/s with a burst of 2: about 5 simulated seconds
    assert 4.8 <= steps * 0.05 <= 5.2
    assert [int(p) for _t, p, _r in transport.sent] == list(range(100))


def test_status_messages_jump_the_queue_and_birth_comes_first(tmp_path: Path) -> None:
    box = filled(tmp_path, 2)
    transport = FakeTransport()
    pub = Publisher(transport, box, max_rate=0, birth=lambda: ("st", b"birth"))
    pub.send_status("st", b"old-heartbeat", replaceable=True)
    pub.send_status("st", b"latest")  # replaces the heartbeat not yet sent
    pub.connected()
    pub.step()
    assert transport.sent[:2] == [("st", b"birth", True), ("st", b"latest", True)]
    assert [p for _t, p, _r in transport.sent[2:]] == [b"0", b"1"]


def test_a_heartbeat_never_swallows_an_answer_not_yet_sent(tmp_path: Path) -> None:
    # The fresh-clone flake: a config_rejected status overwritten by the heartbeat due
    # in the same round, before the publisher thread had sent it.
    transport = FakeTransport()
    pub = Publisher(transport, filled(tmp_path, 0), max_rate=0)
    pub.send_status("st", b"config_rejected")
    pub.send_status("st", b"heartbeat-1", replaceable=True)
    pub.send_status("st", b"heartbeat-2", replaceable=True)
    pub.send_status("other", b"birth-of-another-topic")
    pub.step()
    assert [(t, p) for t, p, _r in transport.sent] == [
        ("st", b"config_rejected"),
        ("st", b"heartbeat-2"),
        ("other", b"birth-of-another-topic"),
    ]


def test_answers_queued_while_the_link_is_down_are_bounded(tmp_path: Path) -> None:
    transport = FakeTransport(is_connected=False)
    pub = Publisher(transport, filled(tmp_path, 0), max_rate=0)
    for k in range(MAX_PENDING_STATUS + 10):
        pub.send_status("st", b"%d" % k)
    pub.step()
    assert transport.sent == []
    transport.is_connected = True
    pub.step()
    assert [int(p) for _t, p, _r in transport.sent] == list(range(10, MAX_PENDING_STATUS + 10))


def test_token_bucket_unlimited_and_limited() -> None:
    clock = FakeClock()
    assert TokenBucket(0, 1, clock).take(1000) == 1000
    bucket = TokenBucket(10, 1, clock)
    assert bucket.take(5) == 1
    assert bucket.take(5) == 0
    assert bucket.wait_time() > 0
    clock.advance(0.1)
    assert bucket.take(5) == 1


def test_a_refused_event_stays_in_the_outbox_and_is_counted(tmp_path: Path) -> None:
    box = filled(tmp_path, 3)
    transport = FakeTransport(auto_ack=False)
    pub = Publisher(transport, box, max_rate=0, max_inflight=3)
    pub.step()
    first, second, third = transport.tickets
    transport.refuse(second)  # the broker's ACL said no (MQTT 5 PUBACK 0x87)
    transport._ack(first)
    transport._ack(third)
    pub.step()
    assert box.depth == 1  # only the refused one is kept...
    assert [item.payload for item in box.peek(after_id=0, limit=10)] == [b"1"]
    assert len(transport.sent) == 3  # ...and not sent again by this process (no loop)
    assert (pub.stats().acked, pub.stats().refused, pub.stats().inflight) == (2, 1, 0)
    # After a restart (a new publisher), it is sent again: fix the ACL, restart, delivered.
    again = Publisher(transport, box, max_rate=0, max_inflight=3)
    again.step()
    assert transport.sent[-1][1] == b"1"
