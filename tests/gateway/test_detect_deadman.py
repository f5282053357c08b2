"""NAB and SKAB files through the engine: no more deadman alarms than real gaps in the data.

The files are not in the repository: they are read from ``../shared/datasets`` beside
it. A gap is real when it is at least the deadman's factor (3) times the device's
cadence learnt from the intervals before it (the median of the last 16), and at least
the floor (30 s).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from contract.alarms import AlarmRaisedEvent
from dataflows.rules import default_rules
from gateway.ops.detect import run_detection, table_events
from simulators.csv_replay import read_csv

DATASETS = Path(__file__).resolve().parents[2] / "../shared/datasets"
S = 1_000_000
FILES = [
    "nab-dev/data/realTraffic/speed_7578.csv",  # 5-minute data, many gaps
    "nab-dev/data/realTraffic/TravelTime_451.csv",  # 1 to 10 minutes, gaps of hours
    "nab-dev/data/realAdExchange/exchange-3_cpc_results.csv",  # hourly, a few gaps
    "skab/data/other/12.csv",  # 1 s data, no gap longer than 5 s
    "skab/data/valve1/0.csv",
]


def real_gaps(times_us: np.ndarray, factor: float = 3.0, floor_s: float = 30.0) -> list[int]:
    """Indices ``i`` of the rows that end a real gap (row ``i - 1`` to row ``i``)."""
    found, history = [], []
    for i in range(1, len(times_us)):
        gap = int(times_us[i] - times_us[i - 1])
        if history:
            cadence = statistics.median(history[-16:])
            if gap >= max(floor_s * S, math.ceil(factor * cadence)):
                found.append(i)
        if gap > 0:
            history.append(gap)
    return found


@pytest.mark.parametrize("name", FILES)
def test_deadman_raises_never_outnumber_the_real_gaps(name: str) -> None:
    path = DATASETS / name
    assert path.exists(), f"{path} is missing: the shared datasets sit beside the repository"
    table = read_csv(path)
    events = table_events(table, site="eval", device=path.stem)
    times = np.asarray(sorted(int(r.time.timestamp() * S) for r in table.rows), np.int64)
    run = run_detection(events, default_rules(), site="eval", device=path.stem)
    raises = [e for e in run.events if isinstance(e, AlarmRaisedEvent) and e.data.kind == "deadman"]
    gaps = real_gaps(times)
    assert len(raises) <= len(gaps), (len(raises), len(gaps))
    ends = set()
    for event in raises:
        t = int(event.data.event_time.timestamp() * S)
        end = int(np.searchsorted(times, t))  # the row that ended the silence
        assert 0 < end < len(times), event.data.message
        assert times[end - 1] < t <= times[end]
        assert end not in ends  # one alarm per gap at most
        ends.add(end)
        detail = event.data.detail
        assert detail is not None
        assert detail.component == "silence"
        assert detail.cadence_s is not None
        assert times[end] - times[end - 1] >= 3 * detail.cadence_s * S
        assert end in gaps
