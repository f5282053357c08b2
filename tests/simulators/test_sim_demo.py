"""The demo that `sensorgate up` runs: a visible anomaly early, again every 4 minutes.

The scenario runs in memory as fast as possible and through the gateway's own engine
(``sensorgate detect``'s path) with the demo's rules: no broker, no clock.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from sim_helpers import run_memory

from contract.alarms import AlarmClearedEvent, AlarmRaisedEvent, AlarmUpdatedEvent
from dataflows.rules import load_rules
from gateway.ops.detect import run_detection
from simulators.anomalies import AnomalyKind, ScheduledAnomaly, parse_anomaly_spec
from simulators.demo import DEMO_ANOMALY_DEVICE, DEMO_RULES, demo_scenario

START = datetime(2026, 3, 2, 10, tzinfo=UTC)


def _seconds(when: datetime) -> float:
    return (when - START).total_seconds()


def test_a_scheduled_anomaly_repeats_every_every_s():
    scenario = demo_scenario().override(duration_s=700.0, speed="max", start=START)
    _, labels, _ = run_memory(scenario)
    ours = [lb for lb in labels if lb.device == DEMO_ANOMALY_DEVICE and lb.kind == "level_shift"]
    assert [(_seconds(lb.start), _seconds(lb.end)) for lb in ours] == [
        (40.0, 70.0),
        (280.0, 310.0),
        (520.0, 550.0),
    ]
    assert all(lb.device != DEMO_ANOMALY_DEVICE or lb.kind == "level_shift" for lb in labels)


def test_every_s_must_leave_room_between_occurrences():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="every_s must be longer"):
        ScheduledAnomaly(kind=AnomalyKind.SPIKE, at_s=0, duration_s=10, every_s=10)
    assert isinstance(parse_anomaly_spec("spike@5"), ScheduledAnomaly)


def test_the_demo_alarm_is_raised_within_a_minute_and_explained():
    scenario = demo_scenario().override(duration_s=1500.0, speed="max", start=START)
    events, _, _ = run_memory(scenario)
    by_device = defaultdict(list)
    for event in events:
        by_device[event.data.device].append(event)
    run = run_detection(
        by_device[DEMO_ANOMALY_DEVICE], load_rules(DEMO_RULES), site="demo",
        device=DEMO_ANOMALY_DEVICE,
    )  # fmt: skip
    ours = [e for e in run.events if e.data.metric == "temperature"]
    raised = [e for e in ours if isinstance(e, AlarmRaisedEvent)]
    # One raise per occurrence (40 s, then every 240 s) until the sixth in the hour.
    assert [_seconds(e.data.event_time) for e in raised] == [40.0, 280.0, 520.0, 760.0, 1000.0,
                                                             1240.0]  # fmt: skip
    first = raised[0].data
    assert first.kind == "anomaly"
    assert first.detail is not None
    assert first.detail.component == "prediction_error"
    assert first.detail.band_high is not None
    assert first.value is not None
    assert first.value > first.detail.band_high
    # The alarm stays up while the temperature is off (30 s), so a person sees it.
    [cleared] = [e for e in ours if isinstance(e, AlarmClearedEvent)][:1]
    assert _seconds(cleared.data.event_time) >= 70.0
    # The sixth raise within the hour is rate limited; the seventh occurrence folds in.
    assert raised[-1].data.rate_limited is True
    folded = [e for e in ours if isinstance(e, AlarmUpdatedEvent) and e.data.folded_raises]
    assert [e.data.folded_raises for e in folded] == [1]
    assert folded[0].data.alarm_id == raised[-1].data.alarm_id
