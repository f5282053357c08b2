import itertools
import random

from hypothesis import given
from hypothesis import strategies as st

from dataflows.dedupe import SequenceSet


def test_in_order_sequences_need_one_interval() -> None:
    seen = SequenceSet()
    assert all(seen.add(i) for i in range(10_000))
    assert len(seen) == 1
    assert not seen.add(5_000)
    assert not seen.add(0)


def test_backlog_next_to_live_traffic() -> None:
    seen = SequenceSet()
    # Live traffic runs ahead while an outbox drains an older backlog.
    for live, old in zip(range(1000, 1100), range(0, 100), strict=True):
        assert seen.add(live)
        assert seen.add(old)
    assert len(seen) == 2
    assert not seen.add(50)
    assert not seen.add(1050)
    assert seen.add(500)


@given(st.lists(st.integers(min_value=0, max_value=300), max_size=400))
def test_behaves_like_a_set_within_bounds(seqs: list[int]) -> None:
    seen = SequenceSet(max_intervals=10_000)
    model: set[int] = set()
    for s in seqs:
        assert seen.add(s) == (s not in model)
        model.add(s)
    assert all(s in seen for s in model)
    state = seen.snapshot()
    intervals = list(zip(state["starts"], state["ends"], strict=True))
    assert intervals == sorted(intervals)
    assert all(a <= b for a, b in intervals)
    assert all(b + 1 < c for (_, b), (c, _) in itertools.pairwise(intervals))


def test_memory_is_bounded_and_the_oldest_gap_is_forgotten() -> None:
    seen = SequenceSet(max_intervals=4)
    for s in range(0, 100, 2):  # every other one: worst case, one interval each
        seen.add(s)
    assert len(seen) == 4
    assert 98 in seen
    assert 0 not in seen  # forgotten: a re-send would be counted again


def test_snapshot_restores() -> None:
    seen = SequenceSet()
    order = list(range(200))
    random.Random(1).shuffle(order)
    for s in order[:150]:
        seen.add(s)
    back = SequenceSet.restore(256, seen.snapshot())
    assert all((s in back) == (s in order[:150]) for s in range(200))
    pairs = list(zip(seen.snapshot()["starts"], seen.snapshot()["ends"], strict=True))
    former = SequenceSet.restore(256, [list(p) for p in pairs])  # snapshots before columns
    assert all((s in former) == (s in order[:150]) for s in range(200))
