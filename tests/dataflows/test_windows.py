import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.windows import WindowStore, parse_window

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
        ("5ms", "at least 10ms"),
    ]:
        with pytest.raises(ValueError, match=needle):
            parse_window(bad)


def test_tumbling_windows_are_aligned_to_the_epoch() -> None:
    assert list(parse_window("10s").starts_for(25 * S + 3)) == [20 * S]


def test_sliding_window_holds_a_reading_in_length_over_step_windows() -> None:
    assert list(parse_window("30s/10s").starts_for(25 * S)) == [0, 10 * S, 20 * S]


def _fold(store: WindowStore, rows: list[tuple[int, int, float]], batches: int) -> None:
    """Fold rows (series, t, value) in ``batches`` consecutive slices."""
    parts = np.array_split(np.arange(len(rows)), max(1, batches))
    for part in parts:
        if not len(part):
            continue
        chunk = [rows[i] for i in part]
        store.add(
            np.asarray([r[0] for r in chunk], np.int32),
            np.asarray([r[1] for r in chunk], np.int64),
            np.asarray([r[2] for r in chunk], np.float64),
        )


def _close_all(store: WindowStore, series_count: int) -> dict[tuple[int, str, int], tuple]:
    out = store.close(np.full(1, 10**15, np.int64), np.zeros(series_count, np.int32))
    assert out is not None
    return {
        (int(out.series[i]), out.window_names[int(out.window[i])], int(out.start_us[i])): (
            int(out.count[i]),
            float(out.mean[i]),
            float(out.min[i]),
            float(out.max[i]),
            float(out.stddev[i]),
            float(out.first[i]),
            float(out.last[i]),
        )
        for i in range(len(out))
    }


def _expected(
    rows: list[tuple[int, int, float]], specs: tuple[str, ...]
) -> dict[tuple[int, str, int], tuple]:
    """The aggregates computed the plain way, reading by reading in arrival order."""
    groups: dict[tuple[int, str, int], list[tuple[int, float]]] = {}
    for series, t, v in rows:
        for name in specs:
            for start in parse_window(name).starts_for(t):
                groups.setdefault((series, name, start), []).append((t, v))
    out = {}
    for key, items in groups.items():
        values = [v for _, v in items]
        first = min(items, key=lambda tv: tv[0])[1]  # earliest time; ties: first arrived
        latest = max(t for t, _ in items)
        last = [v for t, v in items if t == latest][-1]  # ties: last arrived
        stdev = statistics.stdev(values) if len(values) > 1 else math.nan
        out[key] = (
            len(values),
            statistics.fmean(values),
            min(values),
            max(values),
            stdev,
            first,
            last,
        )
    return out


rows_strategy = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.integers(0, 120 * S),
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(rows=rows_strategy, batches=st.integers(1, 6))
def test_folds_in_any_batching_equal_the_plain_aggregates(
    rows: list[tuple[int, int, float]], batches: int
) -> None:
    specs = ("10s", "1m", "30s/10s")
    store = WindowStore(tuple(parse_window(s) for s in specs))
    _fold(store, rows, batches)
    got = _close_all(store, 4)
    want = _expected(rows, specs)
    assert got.keys() == want.keys()
    for key, (count, mean, lo, hi, stdev, first, last) in want.items():
        g = got[key]
        assert g[0] == count
        assert g[1] == pytest.approx(mean, rel=1e-9, abs=1e-6)
        assert (g[2], g[3], g[5], g[6]) == (lo, hi, first, last)
        if math.isnan(stdev):
            assert math.isnan(g[4])
        else:
            assert g[4] == pytest.approx(stdev, rel=1e-6, abs=1e-6)


def test_close_takes_only_windows_past_their_devices_watermark() -> None:
    store = WindowStore((parse_window("10s"),))
    # Series 0 belongs to device 0, series 1 to device 1.
    store.add(
        np.asarray([0, 0, 1], np.int32),
        np.asarray([1 * S, 12 * S, 3 * S], np.int64),
        np.asarray([1.0, 2.0, 3.0]),
    )
    devices = np.asarray([0, 1], np.int32)
    out = store.close(np.asarray([10 * S, 5 * S], np.int64), devices)
    assert out is not None
    assert (out.series.tolist(), out.start_us.tolist()) == ([0], [0])
    assert store.next_end_us() == 10 * S  # device 1's [0, 10) is still open
    assert store.close(np.asarray([10 * S, 5 * S], np.int64), devices) is None
    out = store.close(np.asarray([20 * S, 10 * S], np.int64), devices)
    assert out is not None
    assert sorted(zip(out.series.tolist(), out.start_us.tolist(), strict=True)) == [
        (0, 10 * S),
        (1, 0),
    ]
    assert store.next_end_us() is None
    assert len(store) == 0


def test_extreme_finite_values_never_make_nan_or_raise() -> None:
    store = WindowStore((parse_window("10s"),))
    values = np.asarray([1e308, -1e308, 1e308, 5e-324, -5e-324])
    store.add(np.zeros(5, np.int32), np.arange(5, dtype=np.int64) * S, values)
    store.add(np.zeros(2, np.int32), np.asarray([5 * S, 6 * S]), np.asarray([-1e308, 1e308]))
    out = store.close(np.asarray([10**15], np.int64), np.zeros(1, np.int32))
    assert out is not None
    assert int(out.count[0]) == 7
    assert math.isfinite(float(out.mean[0]))
    assert (float(out.min[0]), float(out.max[0])) == (-1e308, 1e308)
    # The variance overflows: reported as NaN (storage omits it), not inf, no exception.
    assert math.isnan(float(out.stddev[0]))


def test_snapshot_and_restore_resume_the_open_windows() -> None:
    specs = (parse_window("10s"), parse_window("1m"))
    store = WindowStore(specs)
    store.add(np.asarray([0, 1], np.int32), np.asarray([S, 2 * S]), np.asarray([1.0, 2.0]))
    state = store.snapshot()
    back = WindowStore(specs)
    back.restore(state)
    store.add(np.asarray([0], np.int32), np.asarray([3 * S]), np.asarray([5.0]))
    back.add(np.asarray([0], np.int32), np.asarray([3 * S]), np.asarray([5.0]))

    def no_nan(d: dict) -> dict:  # NaN != NaN: compare them as None
        return {k: tuple(None if x != x else x for x in v) for k, v in d.items()}

    assert no_nan(_close_all(store, 2)) == no_nan(_close_all(back, 2))
    with pytest.raises(ValueError, match="differ"):
        WindowStore((parse_window("10s"),)).restore(state)
