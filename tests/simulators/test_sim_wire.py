"""What the simulators put on the wire is a valid event per the contract."""

from __future__ import annotations

import json
import math
import os
import uuid

import pytest
from sim_helpers import START, run_memory, small

from contract import TelemetryEvent, decode, encode
from contract.errors import TopicError
from simulators.anomalies import RandomAnomalies
from simulators.signals import MODEL_NAMES
from simulators.wire import TelemetryTemplate, event_id, format_time


def test_rendered_event_decodes_to_the_same_event_pydantic_would_build():
    template = TelemetryTemplate(
        site="site a",
        device="dev-1",
        sensor="env",
        units={"temperature": "degC", "Volume Flow": ""},
    )
    t = format_time(START)
    raw = template.render(7, t, [("temperature", 21.5, t), ("Volume Flow", -0.000123, t)])
    event = decode(raw)
    assert isinstance(event, TelemetryEvent)
    assert event.time == START
    assert event.source == "/sg/site%20a/dev-1"
    assert event.subject == "dev-1"
    assert (event.data.site, event.data.device, event.data.sequence) == ("site a", "dev-1", 7)
    assert [(r.sensor, r.metric, r.value, r.unit, r.time) for r in event.data.readings] == [
        ("env", "temperature", 21.5, "degC", START),
        ("env", "Volume Flow", -0.000123, "", START),
    ]
    # the same attributes as the contract's own encoder writes, and nothing else
    ours, theirs = json.loads(raw), json.loads(encode(event))
    assert set(ours) == set(theirs)
    assert set(ours["data"]) == set(theirs["data"])
    assert [set(r) for r in ours["data"]["readings"]] == [
        set(r) for r in theirs["data"]["readings"]
    ]


def test_non_finite_values_and_bad_ids_are_refused():
    template = TelemetryTemplate(site="s", device="d", sensor="x", units={"m": ""})
    t = format_time(START)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="not finite"):
            template.render(0, t, [("m", bad, t)])
    with pytest.raises(TopicError):
        TelemetryTemplate(site="s/1", device="d", sensor="x", units={})
    with pytest.raises(TopicError):
        TelemetryTemplate(site="s", device="d", sensor="x", units={"a+b": ""})


def test_every_model_and_anomaly_kind_publishes_valid_events():
    # run_memory decodes every message with contract.decode and checks its topic
    events, labels, report = run_memory(
        small(metrics=MODEL_NAMES, devices=4, random_anomalies=(RandomAnomalies(rate_per_hour=6),))
    )
    assert report.events == len(events) > 0
    assert labels
    seqs: dict[str, list[int]] = {}
    for e in events:
        seqs.setdefault(e.data.device, []).append(e.data.sequence)
        assert len(e.data.readings) == len(MODEL_NAMES)
        assert all(r.time == e.time for r in e.data.readings)
    for s in seqs.values():
        assert s == list(range(len(s)))  # per-device sequence, gap-free


def test_event_ids_are_distinct_version_4_uuids():
    ids = [event_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:50]:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)


def test_a_forked_child_does_not_repeat_its_parents_event_ids():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then out without running pytest's teardown
        os.write(write, event_id().encode())
        os._exit(0)
    os.close(write)
    mine = event_id()
    with os.fdopen(read) as pipe:
        theirs = pipe.read()
    os.waitpid(pid, 0)
    assert len(theirs) == 36
    assert theirs != mine
