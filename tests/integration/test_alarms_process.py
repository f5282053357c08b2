"""Alarm state across a SIGKILL with recovery, acknowledgement from the CLI, rules reload."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contract import Reading, TelemetryEvent, encode
from edge.mqtt import MqttLink
from gateway.localstack.services import ServiceEndpoints, free_port
from gateway.settings import GatewaySettings, settings_env
from tests.integration.alarm_helpers import AlarmCollector
from tests.integration.gateway_kit import gateway_thread, spawn_gateway, wait_ready
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

HOT = """
[[rules]]
id = "hot"
kind = "threshold"
metric = "t"
above = {above}
clear = {clear}
"""


_CLI = [sys.executable, "-m", "gateway.cli"]


class _Device:
    """Publishes one reading per event for device ``d`` of site ``s``, times increasing."""

    def __init__(self, link: MqttLink, settings: GatewaySettings) -> None:
        self.link = link
        self.topic = settings.topics.telemetry("s", "d")
        self.seq = 0
        self.t = datetime.now(UTC) - timedelta(seconds=60)

    def send(self, *values: float) -> None:
        tickets = []
        for value in values:
            self.seq += 1
            self.t += timedelta(seconds=1)
            event = TelemetryEvent.create(
                site="s",
                device="d",
                sequence=self.seq,
                readings=[Reading(sensor="x", metric="t", value=value, time=self.t)],
            )
            tickets.append(self.link.publish(self.topic, encode(event)))
        assert all(t.wait(10) for t in tickets)


def _ids(alarms: AlarmCollector, transition: str) -> set[str]:
    return {e.id for e in alarms.of(transition)}


def test_alarm_survives_sigkill_with_recovery_ack_kept_no_second_raise_no_lost_clear(
    gateway_settings: GatewaySettings,
    services: ServiceEndpoints,
    publisher: MqttLink,
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(HOT.format(above=30, clear=28))
    settings = gateway_settings.model_copy(
        update={
            "metrics_port": free_port(),
            "recovery_dir": str(tmp_path / "recovery"),
            "rules_file": rules,
        }
    )
    device = _Device(publisher, settings)
    port = settings.metrics_port
    with AlarmCollector(services, settings.topic_prefix, f"c-{settings.gateway_id}") as alarms:
        gw = spawn_gateway(settings, tmp_path, "gw-before")
        try:
            wait_ready(gw, port)
            device.send(20.0, 35.0)
            wait_for(lambda: len(_ids(alarms, "raised")) == 1, 30, "the raise")
            alarm_id = alarms.of("raised")[0].data.alarm_id
            ack = subprocess.run(
                [*_CLI, "alarms", "ack", alarm_id, "--site", "s", "--device", "d", "--by", "ops"],
                env={**os.environ, **settings_env(settings)},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert ack.returncode == 0, ack.stderr
            wait_for(lambda: _ids(alarms, "acknowledged"), 30, "the acknowledgement")
            assert alarms.of("acknowledged")[0].data.acknowledged_by == "ops"
            device.send(36.0)  # still hot: no event, but the epoch moves on
            gw.proc.kill()  # SIGKILL: no flush, no acknowledgement of the last epoch
            gw.proc.wait()
        finally:
            gw.stop()
        device.send(37.0)  # queued by the broker for the gateway's persistent session
        gw = spawn_gateway(settings, tmp_path, "gw-after")
        try:
            wait_ready(gw, port)
            device.send(38.0, 20.0)
            wait_for(lambda: _ids(alarms, "cleared"), 30, "the clear after the restart")
        finally:
            gw.stop()
    # Re-delivery may repeat an event after a crash; it is then the same event (same id).
    assert len(_ids(alarms, "raised")) == 1
    assert len(_ids(alarms, "cleared")) == 1
    cleared = alarms.of("cleared")[0].data
    assert cleared.alarm_id == alarm_id
    assert cleared.acknowledged_by == "ops"  # recorded before the crash, kept until clear


def test_reload_keeps_active_alarms_and_clears_removed_rules(
    gateway_settings: GatewaySettings,
    services: ServiceEndpoints,
    publisher: MqttLink,
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(HOT.format(above=30, clear=28))
    settings = gateway_settings.model_copy(update={"rules_file": rules, "rules_check_s": 0.2})
    device = _Device(publisher, settings)
    with (
        AlarmCollector(services, settings.topic_prefix, f"c-{settings.gateway_id}") as alarms,
        gateway_thread(settings) as gateway,
    ):
        device.send(20.0, 35.0)
        wait_for(lambda: _ids(alarms, "raised"), 30, "the raise")
        # Same rule id, changed threshold: its detector is new, its active alarm stays.
        rules.write_text(HOT.format(above=32, clear=31) + "\n# v2\n")
        os.utime(rules, ns=(0, rules.stat().st_mtime_ns + 1_000_000_000))
        wait_for(lambda: _reloads(gateway) >= 1, 10, "the first reload")
        device.send(40.0, 41.0)
        wait_for(lambda: _stored(gateway) >= 4, 30, "the readings after the reload")
        assert len(_ids(alarms, "raised")) == 1
        assert not _ids(alarms, "cleared")
        # The rule removed: its alarm clears with the device's next batch.
        rules.write_text("version = 1\n")
        os.utime(rules, ns=(0, rules.stat().st_mtime_ns + 2_000_000_000))
        wait_for(lambda: _reloads(gateway) >= 2, 10, "the second reload")
        device.send(42.0)
        wait_for(lambda: _ids(alarms, "cleared"), 30, "the clear of the removed rule")
    cleared = alarms.of("cleared")[0].data
    assert "rule removed" in cleared.message
    assert len(_ids(alarms, "raised")) == 1


def _reloads(gateway: object) -> float:
    return gateway.metrics.rules_reloads._value.get()  # type: ignore[attr-defined]


def _stored(gateway: object) -> int:
    q = gateway.query  # type: ignore[attr-defined]
    return int(q.scalar(f"SELECT count(value) FROM {q.layout.readings}") or 0)


_DEVICE_SCRIPT = """
import sys, time
from contract import DeviceOfflineEvent, DeviceOnlineEvent, TopicScheme, encode
from edge.mqtt import MqttLink, MqttSettings, Will
host, port, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
status = TopicScheme(prefix).status("s", "d")
gone = DeviceOfflineEvent.create(site="s", device="d", reason="connection lost")
settings = MqttSettings(host=host, port=port, client_id="lwt-d")
link = MqttLink(settings, will=Will(status, encode(gone)))
link.start()
link.publish(status, encode(DeviceOnlineEvent.create(site="s", device="d")), retain=True).wait(10)
print("online", flush=True)
time.sleep(600)  # a stand-in that lives until the test kills it
"""


def test_last_will_raises_offline_and_the_next_birth_clears_it(
    gateway_settings: GatewaySettings,
    services: ServiceEndpoints,
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("[defaults]\noffline = true\n")
    settings = gateway_settings.model_copy(update={"rules_file": rules})
    argv = [sys.executable, "-c", _DEVICE_SCRIPT, services.mqtt_host, str(services.mqtt_port)]
    argv.append(settings.topic_prefix)
    with (
        AlarmCollector(services, settings.topic_prefix, f"c-{settings.gateway_id}") as alarms,
        gateway_thread(settings),
    ):
        first = _start_device(argv)
        first.kill()  # no DISCONNECT: the broker publishes the will
        first.wait(10)
        wait_for(lambda: _ids(alarms, "raised"), 30, "the offline alarm")
        second = _start_device(argv)
        try:
            wait_for(lambda: _ids(alarms, "cleared"), 30, "the clear on the birth")
            raised, cleared = alarms.of("raised"), alarms.of("cleared")
        finally:
            second.kill()  # its will raises again: after the snapshot above
            second.wait(10)
    assert [(e.data.rule, e.data.device) for e in raised] == [("offline", "d")]
    assert "connection lost" in raised[0].data.message
    assert [e.data.alarm_id for e in cleared] == [raised[0].data.alarm_id]


def _start_device(argv: list[str]) -> subprocess.Popen[str]:
    device = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert device.stdout is not None
    with device.stdout:
        assert device.stdout.readline().strip() == "online"
    return device
