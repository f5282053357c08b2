"""Alarm wiring in the gateway: alarms line protocol, rules watcher, status and commands."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from contract import (
    AlarmRaisedEvent,
    DeadLetterReason,
    DeviceOfflineEvent,
    TopicKind,
    TopicScheme,
    encode,
)
from contract.commands import AcknowledgeAlarmCommand
from dataflows.ingest import CommandIn, Ingestor, RawMessage, Rejected, StatusIn
from gateway.influx.lineprotocol import alarm_line
from gateway.observability.metrics import GatewayMetrics
from gateway.runtime.rules import RulesWatcher

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _raised() -> AlarmRaisedEvent:
    return AlarmRaisedEvent.create(
        alarm_id="a1",
        site="s 1",
        device="d",
        sensor="x",
        metric="t",
        rule="hot",
        kind="threshold",
        severity="major",
        state="active",
        value=35.0,
        threshold=30.0,
        message='t "above" 30',
        event_time=T,
        raised_at=T,
        cause_event_id="e1",
    )


def test_alarm_line_has_the_schema_tags_fields_and_event_time() -> None:
    line = alarm_line(_raised())
    head, fields, ns = _split(line)
    assert head == (
        "alarms,device=d,metric=t,rule=hot,sensor=x,severity=major,site=s\\ 1,state=active"
    )
    assert 'alarm_id="a1"' in fields
    assert "value=35.0" in fields
    assert "threshold=30.0" in fields
    assert 'message="t \\"above\\" 30"' in fields
    assert 'cause_event_id="e1"' in fields
    assert 'event="raised"' in fields
    assert ns == str(int(T.timestamp()) * 10**9)
    assert alarm_line(_raised(), "replay_alarms").startswith("replay_alarms,")


def _split(line: str) -> tuple[str, str, str]:
    # The tag part has no unescaped space after the measurement; fields may have quoted ones.
    i = 0
    while True:
        i = line.index(" ", i)
        if line[i - 1] != "\\":
            break
        i += 1
    head, rest = line[:i], line[i + 1 :]
    fields, ns = rest.rsplit(" ", 1)
    return head, fields, ns


def test_rules_watcher_reloads_on_change_keeps_old_rules_on_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[[rules]]\nid = "a"\nkind = "threshold"\nabove = 1\n')
    metrics = GatewayMetrics()
    watcher = RulesWatcher(path, check_s=60, metrics=metrics)
    version, rules = watcher.current()
    assert version == 0
    assert list(rules.by_id) == ["a"]
    assert not watcher.check()  # unchanged
    path.write_text('[[rules]]\nid = "b"\nkind = "threshold"\nabove = 1\n')
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))
    assert watcher.check()
    assert watcher.current()[0] == 1
    assert list(watcher.current()[1].by_id) == ["b"]
    path.write_text("[[rules]]\nkind = 'nonsense'\n")
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 2 * 10**9))
    assert not watcher.check()
    assert list(watcher.current()[1].by_id) == ["b"]
    assert metrics.rules_errors._value.get() == 1
    watcher.request_reload()  # SIGHUP: reload even with the same mtime
    path.write_text('[[rules]]\nid = "c"\nkind = "threshold"\nabove = 1\n')
    os.utime(path, ns=(0, path.stat().st_mtime_ns))
    assert watcher.check()
    assert list(watcher.current()[1].by_id) == ["c"]


def test_ingest_keys_status_and_commands_by_device_and_rejects_mismatches() -> None:
    scheme = TopicScheme()
    ingestor = Ingestor(scheme)
    now = datetime.now(UTC)
    will = DeviceOfflineEvent.create(site="s", device="d", time=T, reason="connection lost")
    got = ingestor.accept(RawMessage(scheme.status("s", "d"), encode(will), now))
    assert isinstance(got, StatusIn)
    assert got.device_key == "s/d"
    assert got.arrival_event().time == now  # dated by arrival, not by connect time
    ack = AcknowledgeAlarmCommand.create(site="s", device="d", alarm_id="a1", by="ops")
    body = ack.model_dump_json().encode()
    got = ingestor.accept(RawMessage(scheme.device("s", "d", TopicKind.COMMANDS), body, now))
    assert isinstance(got, CommandIn)
    assert got.device_key == "s/d"
    wrong = ingestor.accept(RawMessage(scheme.device("s", "e", TopicKind.COMMANDS), body, now))
    assert isinstance(wrong, Rejected)
    assert wrong.reason is DeadLetterReason.TOPIC_MISMATCH
    junk = ingestor.accept(RawMessage(scheme.status("s", "d"), b"{}", now))
    assert isinstance(junk, Rejected)
