"""The shard's recovery snapshot as a blob: round trips, live arrays, Bytewax recovery."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from dataflows import snapshot_blob
from dataflows.batch import MessageBatch
from dataflows.columns import PointColumns
from dataflows.config import StreamConfig
from dataflows.eventclock import FakeClock, to_us
from dataflows.flow import build_flow
from dataflows.rules import StaticRules, parse_rules
from tests.dataflows.shard_kit import (
    SCHEME,
    aggregates,
    alarm_events,
    batch,
    processor,
    readings,
    send,
    telemetry,
)

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
S = 1_000_000
RULES = parse_rules(
    {
        "defaults": {"anomaly": True, "deadman": "auto", "offline": True},
        "rules": [{"id": "hot", "kind": "threshold", "metric": "temp", "above": 50.0}],
    }
)


def test_a_blob_round_trips_plain_data_and_arrays_as_read_only_views() -> None:
    ring = np.arange(48, dtype=np.int64).reshape(8, 6)
    state = {
        "f": np.array([1.5, np.nan, -np.inf]),
        "i8": np.array([3, -1], np.int8),
        "ring": ring,
        "strided": ring[:, ::2],  # not contiguous: pickled in the stream
        "empty": np.zeros(0, np.float32),
        "plain": {"a": [1, None, "x"], 2: (b"raw", 3.0)},
    }
    blob = snapshot_blob.encode(state)
    assert isinstance(blob, bytes)
    assert snapshot_blob.is_blob(blob)
    back = snapshot_blob.decode(pickle.loads(pickle.dumps(blob)))  # as Bytewax stores it
    assert back.keys() == state.keys()
    for name in ("f", "i8", "ring", "strided", "empty"):
        assert back[name].dtype == state[name].dtype
        np.testing.assert_array_equal(back[name], state[name])
    assert back["plain"] == state["plain"]
    assert not back["ring"].flags.writeable  # a view into the blob: restores copy
    assert back["ring"].ctypes.data % 8 == 0 or not back["ring"].flags.aligned


def test_what_is_not_a_blob_is_refused() -> None:
    assert not snapshot_blob.is_blob({"registry": {}})
    assert not snapshot_blob.is_blob(b"plain bytes")
    with pytest.raises(ValueError, match="not a shard snapshot blob"):
        snapshot_blob.decode(b"XXXX" + bytes(12))
    blob = snapshot_blob.encode({"a": np.arange(10)})
    with pytest.raises(ValueError, match="holds"):
        snapshot_blob.decode(blob + b"\0")


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _traffic(seconds: range, *, hot_at: int | None = None) -> list[tuple[str, bytes]]:
    """Two devices, two series each, one message per device a second."""
    messages = []
    for i in seconds:
        for device in ("a", "b"):
            for metric in ("temp", "rh"):
                value = 60.0 if (i == hot_at and metric == "temp") else 20.0 + (i % 3)
                messages.append(
                    telemetry(i * 2 + (metric == "rh"), _at(i), value, device=device, metric=metric)
                )
    return messages


def _outcome(out: Any) -> tuple[list[Any], list[Any], list[Any]]:
    alarms = [(e.type, e.data.device, e.data.rule, e.data.alarm_id) for e in alarm_events(out)]
    aggs = [(a.device, a.metric, a.start_us, a.count, a.mean) for a in aggregates(out)]
    return alarms, aggs, sorted(readings(out))


def test_a_shard_restored_from_a_blob_of_its_live_arrays_goes_on_exactly_as_the_shard() -> None:
    clock = FakeClock(to_us(T0))
    proc = processor(clock, rules=RULES, lateness_s=2)
    for i in range(40):
        clock.t = to_us(_at(i))
        send(proc, _traffic(range(i, i + 1), hot_at=30))
    assert any(not m.pristine for m in proc.series_alarms.all_machines())  # "hot" raised
    blob = snapshot_blob.encode(proc.snapshot(copy=False))  # the live arrays, as the flow
    # The shard goes on (changing its arrays in place); the blob keeps the epoch's state.
    later = range(40, 75)
    expected = []
    for i in later:
        clock.t = to_us(_at(i))
        expected.append(_outcome(send(proc, _traffic(range(i, i + 1), hot_at=60))))
    clock.t = to_us(_at(40))
    restored = processor(clock, rules=RULES, lateness_s=2, state=snapshot_blob.decode(blob))
    got = []
    for i in later:
        clock.t = to_us(_at(i))
        got.append(_outcome(send(restored, _traffic(range(i, i + 1), hot_at=60))))
    assert got == expected
    assert any(alarms for alarms, _, _ in expected)  # the "hot" clear and raise are in it
    assert any(aggs for _, aggs, _ in expected)


def test_a_flow_with_recovery_resumes_from_its_blobs_after_an_abort(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    received = to_us(now)

    def one(seq: int, value: float) -> MessageBatch:
        return batch([telemetry(seq, now + timedelta(seconds=seq), value)], received)

    # Three messages, an abort, then the broker re-delivers the last one (seq 2) with the
    # next (seq 3): only the dedupe state restored from the blob can drop seq 2.
    items: list[Any] = [one(0, 1.0), one(1, 2.0), one(2, 3.0), TestingSource.ABORT(), one(2, 3.0)]
    items.append(one(3, 4.0))
    points: list[PointColumns] = []
    init_db_dir(tmp_path, 1)

    def run() -> None:
        flow = build_flow(
            TestingSource(items),
            topics=SCHEME,
            points_sink=TestingSink(points),
            deadletter_sink=TestingSink([]),
            rules=StaticRules(parse_rules({})),
            stream=StreamConfig(shards=2),
            recovery=True,
        )
        run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(tmp_path)))

    run()
    first = sorted(v for p in points if p.readings is not None for v in p.readings.value.tolist())
    assert first == [1.0, 2.0, 3.0]
    points.clear()
    run()  # resumes after the last snapshot: the re-delivered seq 2 is a duplicate
    second = sorted(v for p in points if p.readings is not None for v in p.readings.value.tolist())
    assert second == [4.0]
