"""Arrival stamps of the MQTT source: unique across partitions, the same for a redelivery."""

from __future__ import annotations

import itertools

from gateway.connectors.delivery_stamps import DeliveryStamps


def test_stamps_of_one_partition_are_strictly_increasing_on_its_residue() -> None:
    stamps = DeliveryStamps(partition=3, partitions=5)  # step 8
    out = [stamps.stamp(i, 0, False, "t", b"1") for i in range(5_000)]  # faster than 1/8 µs
    assert all(b > a for a, b in itertools.pairwise(out))
    assert {s % 8 for s in out} == {3}


def test_partitions_never_share_a_stamp() -> None:
    parts = [DeliveryStamps(p, 4) for p in range(4)]
    seen = [s.stamp(i, 1, False, "t", b"1") for i in range(2_000) for s in parts]
    assert len(set(seen)) == len(seen)


def test_a_dup_with_the_same_packet_id_and_content_gets_the_first_stamp() -> None:
    stamps = DeliveryStamps()
    first = stamps.stamp(7, 1, False, "shellies/a/relay/0/power", b"12.5")
    stamps.stamp(8, 1, False, "shellies/a/relay/0/power", b"13")
    assert stamps.stamp(7, 1, True, "shellies/a/relay/0/power", b"12.5") == first
    assert (stamps.matched, stamps.unmatched) == (1, 0)


def test_a_dup_of_other_content_or_unknown_id_gets_a_new_stamp() -> None:
    stamps = DeliveryStamps()
    first = stamps.stamp(7, 1, False, "shellies/a/relay/0/power", b"12.5")
    assert stamps.stamp(7, 1, True, "shellies/a/relay/0/power", b"99") > first
    assert stamps.stamp(9, 1, True, "shellies/a/relay/0/power", b"12.5") > first
    assert stamps.unmatched == 2


def test_a_packet_id_reused_before_its_ack_keeps_both_deliveries_apart() -> None:
    # A broker under a backlog may reuse an id while a message with it is unacknowledged.
    stamps = DeliveryStamps()
    first = stamps.stamp(7, 1, False, "t", b"1")
    second = stamps.stamp(7, 1, False, "t", b"2")
    assert stamps.stamp(7, 1, True, "t", b"2") == second
    assert stamps.stamp(7, 1, True, "t", b"1") == first


def test_an_acknowledged_delivery_is_matched_while_kept() -> None:
    stamps = DeliveryStamps()
    first = stamps.stamp(7, 1, False, "t", b"1")
    stamps.acked(7)  # the PUBACK left, and died with the link
    assert stamps.stamp(7, 1, True, "t", b"1") == first
    stamps.acked(7)  # the resend is acknowledged in turn
    for mid in range(1, DeliveryStamps.ACKED_KEPT + 2):
        stamps.stamp(mid, 1, False, "u", b"x")
        stamps.acked(mid)
    assert stamps.stamp(7, 1, True, "t", b"1") != first  # forgotten (bounded memory)


def test_the_snapshot_of_an_epoch_matches_its_redeliveries_after_a_restart() -> None:
    before = DeliveryStamps(1, 2)
    firsts = {mid: before.stamp(mid, 1, False, f"t/{mid}", b"5") for mid in range(1, 6)}
    for mid in (1, 5):
        before.acked(mid)  # acknowledged in an earlier epoch
    state = before.snapshot([2, 3, 4])  # the epoch's messages, not acknowledged yet

    after = DeliveryStamps(1, 2)
    after.restore(state)
    for mid in (2, 3, 4):
        assert after.stamp(mid, 1, True, f"t/{mid}", b"5") == firsts[mid]
    assert after.stamp(5, 1, True, "t/5", b"5") != firsts[5]  # acknowledged before: gone
    fresh = after.stamp(6, 1, False, "t/6", b"5")
    assert fresh > max(firsts.values())
    assert fresh % 2 == 1


def test_the_snapshot_keeps_the_epoch_before_whose_acks_may_be_lost() -> None:
    stamps = DeliveryStamps()
    first = stamps.stamp(1, 1, False, "t", b"1")
    stamps.snapshot([1])  # epoch 1: mid 1, acknowledged at the start of epoch 2
    stamps.acked(1)
    second = stamps.stamp(2, 1, False, "t", b"2")
    state = stamps.snapshot([2])  # epoch 2
    after = DeliveryStamps()
    after.restore(state)
    assert after.stamp(1, 1, True, "t", b"1") == first
    assert after.stamp(2, 1, True, "t", b"2") == second
    stamps.acked(2)
    assert [row[0] for row in stamps.snapshot([])["mids"]] == [2]  # epoch 3: 2 just acked
    assert stamps.snapshot([])["mids"] == []  # epoch 4
