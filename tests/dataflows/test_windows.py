import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflows.windows import Accumulator, SeriesWindows, parse_window

S = 1_000_000


def test_parse_window() -> None:
    assert parse_window("10s").length_us == 10 * S
    assert not parse_window("1m").sliding
    spec = parse_window("5m/1m")
    assert spec.sliding
    assert (spec.length_us, spec.step_us) == (300 * S, 60 * S)
    for bad, needle in [
        ("10", "duration like"),
        ("0s", "longer than zero"),
        ("5m/2m", "multiple of its step"),
    ]:
        with pytest.raises(ValueError, match=needle):
            parse_window(bad)


def test_tumbling_windows_are_aligned_to_the_epoch() -> None:
    assert list(parse_window("10s").starts_for(25 * S + 3)) == [20 * S]


def test_sliding_window_holds_a_reading_in_length_over_step_windows() -> None:
    assert list(parse_window("30s/10s").starts_for(25 * S)) == [0, 10 * S, 20 * S]


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=50))
def test_accumulator_matches_statistics(values: list[float]) -> None:
    acc = Accumulator()
    for i, v in enumerate(values):
        acc.add(i, v)
    assert acc.count == len(values)
    assert math.isclose(acc.mean, statistics.fmean(values), rel_tol=1e-9, abs_tol=1e-6)
    assert acc.min == min(values)
    assert acc.max == max(values)
    assert acc.first_v == values[0]
    assert acc.last_v == values[-1]
    if len(values) > 1:
        assert acc.stddev is not None
        assert math.isclose(acc.stddev, statistics.stdev(values), rel_tol=1e-6, abs_tol=1e-6)
    else:
        assert acc.stddev is None


def test_first_and_last_follow_event_time_not_arrival() -> None:
    acc = Accumulator()
    for t, v in [(5, 50.0), (1, 10.0), (9, 90.0), (3, 30.0)]:
        acc.add(t, v)
    assert (acc.first_v, acc.last_v) == (10.0, 90.0)


def test_close_until_emits_each_window_once() -> None:
    w = SeriesWindows((parse_window("10s"), parse_window("1m")))
    for t in range(0, 70):
        w.add("env", "temp", t * S, float(t))
    assert w.close_until(9 * S, "s", "d") == []
    closed = w.close_until(30 * S, "s", "d")
    assert [(a.window, a.start_us // S, a.count) for a in closed] == [
        ("10s", 0, 10),
        ("10s", 10, 10),
        ("10s", 20, 10),
    ]
    assert closed[0].mean == 4.5
    assert w.close_until(30 * S, "s", "d") == []
    closed = w.close_until(60 * S, "s", "d")
    assert [(a.window, a.start_us // S) for a in closed] == [
        ("10s", 30),
        ("10s", 40),
        ("10s", 50),
        ("1m", 0),
    ]
    assert closed[-1].count == 60
    assert w.next_end_us() == 70 * S


def test_snapshot_round_trip() -> None:
    specs = (parse_window("10s"), parse_window("30s/10s"))
    w = SeriesWindows(specs)
    for t in range(25):
        w.add("a", "b", t * S, t * 1.5)
    back = SeriesWindows(specs)
    back.restore(w.snapshot())
    assert back.next_end_us() == w.next_end_us()
    assert back.close_until(100 * S, "s", "d") == w.close_until(100 * S, "s", "d")
