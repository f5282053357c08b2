"""``sensorgate fuzz`` end to end, small: a real broker, influxd and gateway process.

The 100,000-message run is a command (``docs/hardening.md``); this keeps its plumbing
(corpus, publishing, the gateway's counts, InfluxDB, dead letters on MQTT) honest in
the suite, with a corpus that still holds every category.
"""

from __future__ import annotations

import pytest

from gateway.fuzz.cli import format_table
from gateway.fuzz.run import FuzzOptions, run_fuzz

pytestmark = pytest.mark.integration


def test_a_small_seeded_corpus_is_accounted_for_message_by_message() -> None:
    lines: list[str] = []
    report = run_fuzz(
        FuzzOptions(messages=1_500, seed=7, devices=20, timeout_s=120),
        command="sensorgate fuzz --messages 1500 --seed 7 --devices 20",
        progress=lines.append,
    )
    doc = report.as_dict()
    assert doc["error"] is None, "\n".join(lines)
    assert doc["mismatches"] == []
    assert doc["crashes"] == 0
    assert doc["unaccounted"] == 0
    assert doc["gateway_alive"]
    assert doc["acknowledged"] == doc["published"] == 1_500
    assert len(doc["by_category"]) >= 15  # hostile categories, not only valid telemetry
    assert doc["stored_readings"] == doc["expected"]["readings"]
    assert doc["deadletters_on_mqtt"] == doc["expected"]["deadletters"]
    assert report.ok
    assert "PASS" in format_table(doc)
