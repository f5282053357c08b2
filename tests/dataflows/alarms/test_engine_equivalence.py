"""The columnar engine (banks + lazy alarm machines) raises exactly what the scalar
reference (one detector object per series, reading by reading) raises."""

from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import Reading, TelemetryEvent
from dataflows.detection import DeviceDetector
from dataflows.offline import OfflineEvents, run_offline
from dataflows.rules import parse_rules

T0 = datetime(2026, 11, 30, tzinfo=UTC)

RULES = parse_rules(
    {
        "rules": [
            {
                "id": "hot",
                "kind": "threshold",
                "metric": "t*",
                "above": 30,
                "levels": {"critical": 40},
                "clear": 28,
                "for": "2s",
            },
            {"id": "cold", "kind": "threshold", "metric": "t1", "below": 0},
            {"id": "sane", "kind": "range", "low": -50, "high": 80, "faults": True},
            {"id": "jump", "kind": "rate", "metric": "t0", "max_rate": 5},
            {"id": "stuck", "kind": "flatline", "metric": "p", "duration": "20s"},
            {"id": "odd", "kind": "adaptive", "warmup": 10, "alpha": 0.1, "season_buckets": 0},
        ]
    }
)


def _series(draw_values: list[float], step_s: float) -> list[tuple[float, float]]:
    return [(i * step_s, v) for i, v in enumerate(draw_values)]


def _key(event):  # type: ignore[no-untyped-def]
    d = event.data
    return (
        event.type.split(".")[-2],
        d.rule,
        d.sensor,
        d.metric,
        d.event_time,
        d.severity.value,
        d.value,
        d.threshold,
        d.message,
        d.alarm_id,
    )


values = st.lists(
    st.one_of(
        st.floats(-100, 100, allow_nan=False),
        st.sampled_from([29.0, 31.0, 41.0, 27.0, -1.0, 90.0, 5.0]),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=120, deadline=None)
@given(t0=values, t1=values, p=values, steps=st.lists(st.integers(1, 4), min_size=3, max_size=3))
def test_engine_equals_the_scalar_reference(
    t0: list[float], t1: list[float], p: list[float], steps: list[int]
) -> None:
    # Readings of three series, each at its own pace, merged into events by instant.
    rows = []
    for metric, vals, step in (("t0", t0, steps[0]), ("t1", t1, steps[1]), ("p", p, steps[2])):
        rows += [(t, metric, v) for t, v in _series(vals, step)]
    rows.sort(key=lambda r: (r[0], r[1]))
    by_time: dict[float, list[tuple[str, float]]] = {}
    for t, metric, v in rows:
        by_time.setdefault(t, []).append((metric, v))
    events = []
    for seq, (t, readings) in enumerate(sorted(by_time.items())):
        when = T0 + timedelta(seconds=t)
        events.append(
            TelemetryEvent.create(
                site="s",
                device="d",
                sequence=seq,
                readings=[Reading(sensor="x", metric=m, value=v, time=when) for m, v in readings],
                time=when,
            )
        )
    reference = DeviceDetector("s", "d", RULES)
    want = []
    for event in events:
        want += reference.on_telemetry(event)

    counts = np.asarray([len(e.data.readings) for e in events], np.int64)
    flat = [r for e in events for r in e.data.readings]
    columns = OfflineEvents(
        event_ids=[e.id for e in events],
        counts=counts,
        sensors=[r.sensor for r in flat],
        metrics=[r.metric for r in flat],
        t_us=np.asarray([int((r.time - T0).total_seconds() * 1e6) for r in flat], np.int64)
        + int(T0.timestamp() * 1e6),
        values=np.asarray([r.value for r in flat], np.float64),
    )
    got = run_offline(RULES, "s", "d", columns).alarms
    assert sorted(map(_key, got), key=str) == sorted(map(_key, want), key=str)
