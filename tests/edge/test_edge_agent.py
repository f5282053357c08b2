"""The agent's main loop with a fake clock and a fake transport: hours in milliseconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from edge_testkit import make_config

from contract.codec import decode
from contract.errors import StorageError
from contract.events import DeviceOnlineEvent, Reading, TelemetryEvent
from edge.agent import Agent
from edge.clock import FakeClock
from edge.transport import FakeTransport


def run(agent: Agent, clock: FakeClock, seconds: float, tick: float = 0.05) -> None:
    """Alternate the main loop and the publisher, as their two threads would."""
    end = clock.monotonic() + seconds
    assert agent.publisher is not None
    while clock.monotonic() < end:
        wait = agent.step()
        agent.publisher.step()
        clock.advance(min(wait, tick, end - clock.monotonic()))
    agent.publisher.step()


def telemetry(transport: FakeTransport) -> list[TelemetryEvent]:
    return [e for _t, p, _r in transport.sent if isinstance(e := decode(p), TelemetryEvent)]


def statuses(transport: FakeTransport) -> list[DeviceOnlineEvent]:
    return [e for _t, p, _r in transport.sent if isinstance(e := decode(p), DeviceOnlineEvent)]


def make_agent(tmp_path: Path, **config: Any) -> tuple[Agent, FakeClock, FakeTransport, list]:
    clock = FakeClock()
    transport = FakeTransport()
    sampled: list[Reading] = []
    agent = Agent(
        make_config(tmp_path, **config),
        clock=clock,
        transport=transport,
        on_readings=sampled.extend,
    )
    agent.start()
    return agent, clock, transport, sampled


def test_an_hour_of_sampling_arrives_batched_and_numbered(tmp_path: Path) -> None:
    agent, clock, transport, sampled = make_agent(
        tmp_path, batch={"max_readings": 10, "max_age_s": 60}, status={"heartbeat_s": 600}
    )
    run(agent, clock, 3600, tick=1.0)
    events = telemetry(transport)
    assert len(sampled) == 3600
    assert [e.data.sequence for e in events] == list(range(len(events)))
    assert all(len(e.data.readings) == 10 for e in events)
    assert [r for e in events for r in e.data.readings] == sampled
    assert agent.outbox.depth == 0
    # birth first, then a heartbeat every 10 minutes
    kinds = [s.data.reason for s in statuses(transport)]
    assert kinds[0] == "birth"
    assert kinds.count("heartbeat") == 5
    last = statuses(transport)[-1].data
    assert last.details["sensors"]["sim"]["samples"] == 3001  # the heartbeat at 3000 s
    assert last.config_hash == agent.config.config_hash()


def test_batches_close_by_age_when_count_is_not_reached(tmp_path: Path) -> None:
    agent, clock, transport, sampled = make_agent(
        tmp_path, batch={"max_readings": 1000, "max_age_s": 5}
    )
    run(agent, clock, 60)
    sizes = [len(e.data.readings) for e in telemetry(transport)]
    assert sizes
    assert all(s in (5, 6) for s in sizes)
    assert sum(sizes) + agent.batcher.pending == len(sampled)


def test_outage_then_drain_oldest_first_and_budget_drops_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent, clock, transport, _sampled = make_agent(
        tmp_path,
        batch={"max_readings": 1, "max_age_s": 60},
        outbox={"path": str(tmp_path / "o.db"), "max_events": 100, "max_rate": 10},
    )
    transport.is_connected = False
    run(agent, clock, 300)  # 300 events, budget 100: the 200 oldest are dropped
    assert agent.outbox.depth == 100
    assert agent.outbox.stats().dropped_total == 200
    transport.is_connected = True
    assert agent.publisher is not None
    agent.publisher.connected()
    run(agent, clock, 30)  # 10/s drains 100 old + keeps up with the 30 new ones
    seqs = [e.data.sequence for e in telemetry(transport)]
    # oldest first, nothing missing; the reading taken at the reconnect instant may push
    # out one more old event before the first send
    assert seqs[0] in (200, 201)
    assert seqs == list(range(seqs[0], 330))
    assert agent.outbox.depth == 0
    assert agent.outbox.stats().dropped_total == seqs[0]
    agent.publisher.send_status(agent.status_topic, agent.status.online("heartbeat"))
    agent.publisher.step()
    assert statuses(transport)[-1].data.details["dropped_total"] == seqs[0]
    # the drops were reported as they happened (in the log; the status of an offline
    # device keeps only the latest, which carries dropped_total, as checked above)
    warnings = [r.getMessage() for r in caplog.records if "over budget" in r.getMessage()]
    assert warnings
    assert int(warnings[-1].rsplit("(", 1)[1].split()[0]) >= 190  # "(N in total)"


def test_invalid_remote_config_is_refused_naming_the_field(tmp_path: Path) -> None:
    agent, clock, transport, _ = make_agent(tmp_path)
    before = agent.config
    agent.handle_config_payload(b'{"intervals": {"sim": -3}}')
    run(agent, clock, 1)
    assert agent.config is before
    assert agent.sensor_intervals == {"sim": 1.0}
    refused = [s for s in statuses(transport) if s.data.reason == "config_rejected"]
    assert refused[-1].data.details["config_error"]["field"] == "intervals.sim"
    assert "greater than or equal to 0.01" in refused[-1].data.details["config_error"]["reason"]


def test_a_remote_interval_below_the_floor_is_refused(tmp_path: Path) -> None:
    agent, clock, transport, _ = make_agent(tmp_path)
    agent.handle_config_payload(b'{"intervals": {"sim": 0.000001}}')
    run(agent, clock, 1)
    assert agent.sensor_intervals == {"sim": 1.0}
    refused = [s for s in statuses(transport) if s.data.reason == "config_rejected"]
    assert refused[-1].data.details["config_error"]["field"] == "intervals.sim"


def test_valid_remote_config_changes_sampling_and_batching_live(tmp_path: Path) -> None:
    agent, clock, transport, sampled = make_agent(
        tmp_path, batch={"max_readings": 100, "max_age_s": 60}
    )
    run(agent, clock, 10)
    n0 = len(sampled)
    payload = {"intervals": {"sim": 0.25}, "batch": {"max_readings": 4}, "revision": "r2"}
    agent.handle_config_payload(json.dumps(payload).encode())
    run(agent, clock, 10)
    assert agent.sensor_intervals == {"sim": 0.25}
    assert 39 <= len(sampled) - n0 <= 41
    assert all(len(e.data.readings) == 4 for e in telemetry(transport)[-5:])
    applied = [s for s in statuses(transport) if s.data.reason == "config_applied"][-1]
    assert applied.data.details["config_revision"] == "r2"
    assert applied.data.details["config_source"] == "remote"
    assert applied.data.config_hash == agent.config.config_hash()
    # clearing the retained config restores the file's settings
    agent.handle_config_payload(b"")
    run(agent, clock, 1)
    assert agent.sensor_intervals == {"sim": 1.0}
    assert agent.config is agent.base_config


def test_a_faulty_sensor_reports_fault_readings_and_status(tmp_path: Path) -> None:
    agent, clock, transport, sampled = make_agent(
        tmp_path,
        sensors=[
            {"id": "sim", "driver": "simulated", "interval_s": 1, "options": {"fail_every": 3}}
        ],
    )
    run(agent, clock, 9)
    faults = [r for r in sampled if r.fault is not None]
    assert len(faults) == 3
    assert all(r.value is None for r in faults)
    reasons = [s.data.reason for s in statuses(transport)]
    assert "sensor_fault" in reasons
    assert "sensor_recovered" in reasons


def test_clean_shutdown_stores_open_batches(tmp_path: Path) -> None:
    agent, clock, transport, sampled = make_agent(
        tmp_path, batch={"max_readings": 1000, "max_age_s": 600}
    )
    transport.is_connected = False
    run(agent, clock, 5)
    assert agent.outbox.depth == 0
    assert agent.batcher.pending == len(sampled)
    agent.shutdown(drain_s=0)
    again = Agent(make_config(tmp_path), clock=clock, transport=FakeTransport())
    assert again.outbox.depth == 1
    [item] = again.outbox.peek()
    event = decode(item.payload)
    assert isinstance(event, TelemetryEvent)
    assert list(event.data.readings) == sampled
    again.shutdown(drain_s=0)


def test_a_failing_disk_keeps_batches_in_memory_and_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, clock, transport, sampled = make_agent(
        tmp_path, batch={"max_readings": 2, "max_age_s": 60}
    )
    real_append = agent.outbox.append
    failing = {"on": True}

    def append(*args: Any, **kwargs: Any) -> tuple[int, int]:
        if failing["on"]:
            raise StorageError("disk I/O error")
        return real_append(*args, **kwargs)

    monkeypatch.setattr(agent.outbox, "append", append)
    run(agent, clock, 6)
    assert agent.outbox.depth == 0
    assert len(agent._unstored) == 3
    failing["on"] = False
    run(agent, clock, 2)
    readings = [r for e in telemetry(transport) for r in e.data.readings]
    assert readings == sampled[: len(readings)]
    assert len(readings) >= 6  # the three batches kept in memory arrived, in order
    # the failed attempts used no sequence: the numbers run on without a gap
    seqs = [e.data.sequence for e in telemetry(transport)]
    assert seqs == list(range(len(seqs)))


def test_a_bad_config_file_on_reload_is_refused_and_the_agent_keeps_running(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agent.toml"
    good = (
        'site = "site-a"\ndevice = "dev-1"\n'
        f'[outbox]\npath = "{tmp_path / "outbox.db"}"\n'
        "[batch]\nmax_readings = 2\nmax_age_s = 60\n"
        '[[sensors]]\nid = "sim"\ndriver = "simulated"\ninterval_s = 1.0\n'
    )
    path.write_text(good)
    clock, transport, sampled = FakeClock(), FakeTransport(), []
    from edge.config import load_config

    agent = Agent(
        load_config(path),
        clock=clock,
        transport=transport,
        on_readings=sampled.extend,
        config_path=path,
    )
    agent.start()
    run(agent, clock, 4)
    before, n_sampled, n_sent = agent.config, len(sampled), len(telemetry(transport))

    cases = [
        ("site = \n", "--config", "not valid TOML"),  # malformed TOML
        (good.replace("interval_s = 1.0", "interval_s = -5"), "sensors[0].interval_s", "greater"),
        (good + "[mqtt]\nport = 1884\n", "mqtt", "needs a restart"),  # not a live setting
    ]
    for text, field, reason in cases:
        path.write_text(text)
        agent.request_reload()
        run(agent, clock, 4)
        assert agent.config is before, field  # the running config stays
        refused = [s for s in statuses(transport) if s.data.reason == "config_rejected"][-1]
        error = refused.data.details["config_error"]
        assert (error["field"], error["source"]) == (field, "file")
        assert reason in error["reason"]
        # ... and it keeps sampling and publishing on it
        assert len(sampled) >= n_sampled + 4
        assert len(telemetry(transport)) >= n_sent + 2
        n_sampled, n_sent = len(sampled), len(telemetry(transport))

    # a valid file with a live change is applied, and clears the error
    path.write_text(good.replace("interval_s = 1.0", "interval_s = 0.5"))
    agent.request_reload()
    run(agent, clock, 4)
    assert agent.sensor_intervals == {"sim": 0.5}
    applied = [s for s in statuses(transport) if s.data.reason == "config_applied"][-1]
    assert applied.data.details["config_error"] is None
    assert applied.data.config_hash == agent.config.config_hash() != before.config_hash()
    seqs = [e.data.sequence for e in telemetry(transport)]
    assert seqs == list(range(len(seqs)))
    agent.shutdown(drain_s=0)
