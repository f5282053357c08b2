"""The agent against a real mosquitto on loopback: delivery, outages, kills, live config."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from edge_testkit import (
    AgentThread,
    Subscriber,
    agent_overrides,
    first_seen,
    publish_retained,
    received_events,
    wait_for,
)

from contract import TopicScheme
from contract.codec import decode
from contract.events import DeviceOfflineEvent, DeviceOnlineEvent, TelemetryEvent
from edge.bench.agentproc import config_toml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def reading_key(r: Any) -> tuple[Any, ...]:
    return (r.sensor, r.metric, r.value, r.unit, r.time, r.fault)


def test_every_reading_arrives_exactly_as_sampled_with_birth_and_goodbye(
    services: Any,
    topics: TopicScheme,
    tmp_path: Path,
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    host, port = services.mqtt_host, services.mqtt_port
    sub = subscriber_factory(host, port, f"{topics.prefix}/#")
    runner = AgentThread(agent_overrides(tmp_path, topics.prefix, port))
    cfg = runner.config
    telemetry = topics.telemetry(cfg.site, cfg.device)
    status = topics.status(cfg.site, cfg.device)
    with runner:
        wait_for(lambda: len(runner.readings()) >= 400, 15, "400 sampled readings")
        runner.stop()
    sampled = runner.readings()
    want = sorted(map(reading_key, sampled))

    def got() -> list[tuple[Any, ...]]:
        events = first_seen(received_events(sub.snapshot(), telemetry))
        return sorted(reading_key(r) for e in events for r in e.data.readings)

    wait_for(lambda: len(got()) >= len(want), 15, "every sampled reading at the subscriber")
    assert got() == want  # nothing lost, nothing altered, nothing invented
    events = first_seen(received_events(sub.snapshot(), telemetry))
    assert [e.data.sequence for e in events] == list(range(len(events)))
    assert all(isinstance(e, TelemetryEvent) and e.data.device == cfg.device for e in events)

    statuses = [decode(p) for t, p, _r in sub.snapshot() if t == status]
    birth = statuses[0]
    assert isinstance(birth, DeviceOnlineEvent)
    assert birth.data.reason == "birth"
    assert birth.data.drivers == ("simulated",)
    assert birth.data.config_hash == cfg.config_hash()
    assert birth.data.agent_version
    assert birth.data.details["sensors"]["sim"]["interval_s"] == 0.01
    assert birth.data.details["batch"] == {"max_readings": 10, "max_age_s": 0.2}
    assert any(s.data.reason == "heartbeat" for s in statuses)
    # after a clean stop the retained status says offline/shutdown
    late = subscriber_factory(host, port, status)
    wait_for(late.snapshot, 5, "the retained status")
    [(_t, payload, retained)] = late.snapshot()
    goodbye = decode(payload)
    assert retained
    assert isinstance(goodbye, DeviceOfflineEvent)
    assert goodbye.data.reason == "shutdown"


@pytest.fixture
def broker_dir() -> Iterator[Path]:
    """A broker work dir that mosquitto can persist into.

    Started as root, mosquitto drops to the ``mosquitto`` user and then cannot write
    its persistence file into a root-owned (and pytest's 0700) tmp dir: it says
    "Error: Permission denied" and a restart forgets every session and queued
    message. The subscriber of the outage test needs its session to survive.
    """
    workdir = Path(tempfile.mkdtemp(prefix="sg-edge-broker-"))
    workdir.chmod(0o755)
    data = workdir / "mosquitto"
    data.mkdir()
    if os.geteuid() == 0:
        with contextlib.suppress(LookupError, OSError):
            shutil.chown(data, user="mosquitto")
    yield workdir
    shutil.rmtree(workdir, ignore_errors=True)


OUTAGE_S = 20.0  # the scenario: the broker is down for 20 s while the agent samples


def test_broker_stopped_20s_every_reading_arrives_once_in_order_with_no_gap(
    topics: TopicScheme,
    tmp_path: Path,
    broker_dir: Path,
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    from gateway.localstack.services import free_port, start_mosquitto

    port = free_port()
    broker, port = start_mosquitto(broker_dir, port=port)
    max_rate = 200.0
    runner = AgentThread(
        agent_overrides(
            tmp_path,
            topics.prefix,
            port,
            interval=0.01,  # ~133 readings/s, ~27 events/s: ~530 events pile up in 20 s
            batch={"max_readings": 5, "max_age_s": 0.2},
            outbox={"path": str(tmp_path / "outbox.db"), "max_rate": max_rate},
        )
    )
    cfg = runner.config
    telemetry = topics.telemetry(cfg.site, cfg.device)
    # A persistent session: the broker queues for this subscriber across its own restart.
    sub = subscriber_factory(
        "127.0.0.1", port, telemetry, client_id=f"sub-{topics.prefix[-10:]}", clean_session=False
    )
    try:
        with runner:
            agent = runner.agent
            wait_for(lambda: len(received_events(sub.snapshot(), telemetry)) >= 10, 10, "traffic")
            broker.stop()
            t_down = time.monotonic()
            wait_for(lambda: agent.link is not None and not agent.link.connected, 10, "the drop")
            # keep sampling through the outage: the outbox holds what cannot be sent
            wait_for(
                lambda: time.monotonic() - t_down >= OUTAGE_S,
                OUTAGE_S + 5,
                f"{OUTAGE_S:.0f} s of broker outage",
            )
            backlog = agent.outbox.depth
            assert backlog >= 0.8 * OUTAGE_S * 27 * 0.8, backlog
            t_up = time.monotonic()
            broker, _ = start_mosquitto(broker_dir, port=port)
            wait_for(lambda: agent.outbox.depth <= 2, 30, "the backlog to drain")
            drain_s = time.monotonic() - t_up
            runner.stop()
        sampled = sorted(map(reading_key, runner.readings()))

        def got() -> list[tuple[Any, ...]]:
            events = first_seen(received_events(sub.snapshot(), telemetry))
            return sorted(reading_key(r) for e in events for r in e.data.readings)

        wait_for(lambda: len(got()) >= len(sampled), 20, "every reading at the subscriber")
        arrived = received_events(sub.snapshot(), telemetry)
        # Exactly once per sequence: a sequence names one event (a QoS 1 re-delivery
        # repeats the same event id, which the gateway dedupes on (device, sequence)),
        # and every sampled reading is in exactly one sequence: none lost, none twice.
        ids: dict[int, set[str]] = {}
        for event in arrived:
            ids.setdefault(event.data.sequence, set()).add(event.id)
        assert all(len(v) == 1 for v in ids.values()), "two events under one sequence"
        assert got() == sampled
        seqs = [e.data.sequence for e in first_seen(arrived)]
        assert seqs == list(range(len(seqs))), "in order (oldest first) and with no gap"
        assert agent.outbox.stats().dropped_total == 0
        rate = backlog / drain_s
        repeats = len(arrived) - len(seqs)
        print(
            f"\noutage {OUTAGE_S:.0f} s: backlog {backlog} events drained in {drain_s:.2f} s"
            f" ({rate:.0f}/s), {repeats} QoS 1 re-deliveries"
        )
        # the drain obeys max_rate (new events keep arriving meanwhile, so it takes longer)
        assert drain_s >= (backlog - max_rate / 10) / max_rate * 0.9
    finally:
        broker.stop()


def _outbox_rows(path: Path) -> list[tuple[int, bytes]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [(r[0], bytes(r[1])) for r in db.execute("SELECT sequence, payload FROM outbox")]
    finally:
        db.close()


def _outbox_depth(path: Path) -> int:
    try:
        return len(_outbox_rows(path))
    except sqlite3.Error:
        return 0


def test_sigkill_then_restart_replays_the_outbox_with_no_gap_and_no_reuse(
    services: Any,
    topics: TopicScheme,
    tmp_path: Path,
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    host, port = services.mqtt_host, services.mqtt_port
    overrides = agent_overrides(
        tmp_path,
        topics.prefix,
        port,
        interval=0.01,  # the floor
        batch={"max_readings": 5, "max_age_s": 0.1},
        # slower out than in (20 events/s), so the outbox holds a backlog at the kill
        outbox={"path": str(tmp_path / "outbox.db"), "max_rate": 8},
    )
    config_path = tmp_path / "agent.toml"
    config_path.write_text(config_toml(overrides))
    site, device = overrides["site"], overrides["device"]
    telemetry, status = topics.telemetry(site, device), topics.status(site, device)
    sub = subscriber_factory(host, port, f"{topics.prefix}/#")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "edge.cli", "run", "--config", str(config_path)]

    first = subprocess.Popen(cmd, env=env, cwd=REPO, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(received_events(sub.snapshot(), telemetry)) >= 10, 15, "traffic")
        wait_for(lambda: _outbox_depth(tmp_path / "outbox.db") >= 30, 15, "a backlog")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
        first.stderr.close()  # type: ignore[union-attr]
    in_outbox = {seq: decode(payload) for seq, payload in _outbox_rows(tmp_path / "outbox.db")}
    before = {e.data.sequence: e.id for e in received_events(sub.snapshot(), telemetry)}
    before.update({seq: e.id for seq, e in in_outbox.items()})
    assert len(in_outbox) >= 30

    # the broker published the retained last will when the socket died
    def last_will() -> bool:
        events = [decode(p) for t, p, _r in sub.snapshot() if t == status]
        return any(isinstance(e, DeviceOfflineEvent) for e in events)

    wait_for(last_will, 10, "the last will")
    late = subscriber_factory(host, port, status)  # retained: a newcomer sees it too
    wait_for(late.snapshot, 5, "the retained last will")
    will = decode(late.snapshot()[0][1])
    assert late.snapshot()[0][2]
    assert isinstance(will, DeviceOfflineEvent)
    assert will.data.reason == "connection lost"

    second = subprocess.Popen(cmd, env=env, cwd=REPO, stderr=subprocess.PIPE)
    try:

        def arrived() -> dict[int, str]:
            return {e.data.sequence: e.id for e in received_events(sub.snapshot(), telemetry)}

        wait_for(lambda: set(in_outbox) <= set(arrived()), 90, "the outbox of the killed agent")
        wait_for(lambda: max(arrived()) > max(before) + 5, 15, "new events after the restart")
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0
    finally:
        if second.poll() is None:
            second.kill()
        second.stderr.close()  # type: ignore[union-attr]

    events = received_events(sub.snapshot(), telemetry)
    by_seq: dict[int, set[str]] = {}
    for event in events:
        by_seq.setdefault(event.data.sequence, set()).add(event.id)
    # a sequence names one event: re-deliveries repeat the same event, never another one
    assert all(len(ids) == 1 for ids in by_seq.values())
    for seq, event in in_outbox.items():
        assert by_seq[seq] == {event.id}
    new = [e for e in events if e.id not in set(before.values())]
    assert new
    assert min(e.data.sequence for e in new) > max(before)
    statuses = [decode(p) for t, p, _r in sub.snapshot() if t == status]
    # The union of what both runs delivered has no gap: the restart goes on at the next
    # number (nothing skipped), and any hole would have to be a budget drop, reported.
    dropped = max(s.data.details.get("dropped_total", 0) for s in statuses)
    delivered = set(by_seq)
    missing = set(range(max(delivered) + 1)) - delivered
    assert len(missing) == dropped, f"sequences lost without a report: {sorted(missing)[:20]}"
    assert dropped == 0  # this run stays far inside the budget
    assert min(e.data.sequence for e in new) == max(before) + 1
    reasons = [(type(s).__name__, s.data.reason) for s in statuses]
    assert ("DeviceOnlineEvent", "birth") in reasons[
        reasons.index(("DeviceOfflineEvent", "connection lost")) :
    ]
    assert reasons[-1] == ("DeviceOfflineEvent", "shutdown")


def test_remote_config_applies_live_and_invalid_is_refused(
    services: Any,
    topics: TopicScheme,
    tmp_path: Path,
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    host, port = services.mqtt_host, services.mqtt_port
    runner = AgentThread(
        agent_overrides(tmp_path, topics.prefix, port, interval=0.05, batch={"max_age_s": 5})
    )
    cfg = runner.config
    telemetry = topics.telemetry(cfg.site, cfg.device)
    status = topics.status(cfg.site, cfg.device)
    config_topic = topics.config(cfg.site, cfg.device)
    sub = subscriber_factory(host, port, f"{topics.prefix}/#")

    def statuses(reason: str) -> list[Any]:
        found = [decode(p) for t, p, _r in sub.snapshot() if t == status]
        return [s for s in found if s.data.reason == reason]

    try:
        with runner:
            wait_for(lambda: statuses("birth"), 10, "the birth message")
            change = {"intervals": {"sim": 0.01}, "batch": {"max_readings": 3}, "revision": "r7"}
            publish_retained(host, port, config_topic, json.dumps(change).encode())
            [applied] = wait_for(lambda: statuses("config_applied"), 10, "config_applied")
            assert applied.data.details["config_revision"] == "r7"
            assert applied.data.details["sensors"]["sim"]["interval_s"] == 0.01
            assert applied.data.config_hash != cfg.config_hash()
            n = len(received_events(sub.snapshot(), telemetry))
            wait_for(
                lambda: len(received_events(sub.snapshot(), telemetry)) >= n + 10, 10, "traffic"
            )
            later = received_events(sub.snapshot(), telemetry)[n + 2 :]
            assert all(len(e.data.readings) == 3 for e in later)  # batching changed live

            publish_retained(host, port, config_topic, b'{"intervals": {"sim": "fast"}}')
            [refused] = wait_for(lambda: statuses("config_rejected"), 10, "config_rejected")
            assert refused.data.details["config_error"]["field"] == "intervals.sim"
            assert runner.agent.sensor_intervals["sim"] == 0.01  # the old config stays
            n = len(received_events(sub.snapshot(), telemetry))  # ... and keeps running on it
            wait_for(
                lambda: len(received_events(sub.snapshot(), telemetry)) >= n + 10, 10, "traffic"
            )
            assert all(
                len(e.data.readings) == 3 for e in received_events(sub.snapshot(), telemetry)[n:]
            )
            assert runner.thread.is_alive()
    finally:
        publish_retained(host, port, config_topic, b"")  # clear the retained config


class _AgentRun:
    """``edge run`` of a config file written under ``tmp_path``, and a subscriber to all."""

    def __init__(
        self,
        services: Any,
        topics: TopicScheme,
        tmp_path: Path,
        subscriber_factory: Callable[..., Subscriber],
    ) -> None:
        overrides = agent_overrides(tmp_path, topics.prefix, services.mqtt_port, interval=0.02)
        self.config_path = tmp_path / "agent.toml"
        self.good = config_toml(overrides)
        self.config_path.write_text(self.good)
        site, device = overrides["site"], overrides["device"]
        self.telemetry = topics.telemetry(site, device)
        self.status = topics.status(site, device)
        self.sub = subscriber_factory(services.mqtt_host, services.mqtt_port, f"{topics.prefix}/#")

    def start(self, stderr: int) -> subprocess.Popen[bytes]:
        """Start ``edge run`` on the config file (importing this tree)."""
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "edge.cli", "run", "--config", str(self.config_path)]
        return subprocess.Popen(cmd, env=env, cwd=REPO, stderr=stderr)


@pytest.fixture
def started(
    services: Any,
    topics: TopicScheme,
    tmp_path: Path,
    subscriber_factory: Callable[..., Subscriber],
) -> _AgentRun:
    """An agent config under ``tmp_path`` and a subscriber to all (the agent not started)."""
    return _AgentRun(services, topics, tmp_path, subscriber_factory)


def test_sighup_with_a_malformed_config_file_is_refused_and_the_agent_keeps_running(
    started: _AgentRun,
) -> None:
    config_path, good, sub = started.config_path, started.good, started.sub
    telemetry, status = started.telemetry, started.status

    def statuses(reason: str) -> list[Any]:
        found = [decode(p) for t, p, _r in sub.snapshot() if t == status]
        return [s for s in found if s.data.reason == reason]

    agent = started.start(stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(received_events(sub.snapshot(), telemetry)) >= 3, 15, "traffic")
        config_path.write_text(good.replace("[mqtt]", "[mqtt\n"))  # not TOML any more
        agent.send_signal(signal.SIGHUP)
        [refused] = wait_for(lambda: statuses("config_rejected"), 10, "config_rejected")
        error = refused.data.details["config_error"]
        assert (error["field"], error["source"]) == ("--config", "file")
        assert "not valid TOML" in error["reason"]
        assert refused.data.config_hash == statuses("birth")[0].data.config_hash
        n = len(received_events(sub.snapshot(), telemetry))
        wait_for(
            lambda: len(received_events(sub.snapshot(), telemetry)) >= n + 5,
            10,
            "telemetry on the old config after the refusal",
        )
        assert agent.poll() is None
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(20) == 0
        stderr = agent.stderr.read().decode()  # type: ignore[union-attr]
        assert "refused the config file" in stderr
        assert "keeps running on its current config" in stderr
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.stderr.close()  # type: ignore[union-attr]
    seqs = [e.data.sequence for e in first_seen(received_events(sub.snapshot(), telemetry))]
    assert seqs == list(range(len(seqs)))


def test_a_storm_of_sighups_is_answered_and_sigterm_still_stops_the_agent(
    started: _AgentRun,
) -> None:
    # Signals are taken by the main thread with sigtimedwait while the agent runs in
    # its own thread: no handler runs inside a lock the agent holds, so none can hang it.
    telemetry, status, sub = started.telemetry, started.status, started.sub
    agent = started.start(stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(received_events(sub.snapshot(), telemetry)) >= 3, 15, "traffic")
        for _ in range(200):
            agent.send_signal(signal.SIGHUP)
        wait_for(
            lambda: any(
                decode(p).data.reason == "config_applied" for t, p, _r in sub.snapshot()
                if t == status
            ),
            10, "a config_applied status",
        )  # fmt: skip
        n = len(received_events(sub.snapshot(), telemetry))
        wait_for(
            lambda: len(received_events(sub.snapshot(), telemetry)) >= n + 5,
            10,
            "telemetry after the storm",
        )
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(20) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
