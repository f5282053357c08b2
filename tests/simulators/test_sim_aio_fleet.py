"""The asyncio per-device fleet against the real broker: identities, wills, restarts, content.

Each test has its own topic prefix and client ids; every wait is on a condition with a
generous timeout. No test asserts a wall-clock or CPU figure: ``sensorgate bench-fleet``
measures those.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sim_helpers import START, Collector, mqtt_settings

from contract import DeviceOfflineEvent, DeviceOnlineEvent, TelemetryEvent, TopicKind, decode
from simulators.aio_fleet import AsyncFleet
from simulators.anomalies import parse_anomaly_spec
from simulators.connections import ConnectionPlan
from simulators.device_status import WILL_REASON
from simulators.fleet import Fleet, wait_until
from simulators.labels import JsonLinesLabelSink, MemoryLabelSink, labels_topic, read_labels
from simulators.links import MemoryPublisher
from simulators.scenario import build_devices, simple_scenario
from simulators.timebase import Timebase

pytestmark = pytest.mark.integration

WAIT_S = 60.0  # generous: the test machine is shared


def _plan(unique: str, **kw: Any) -> ConnectionPlan:
    options: dict[str, Any] = {
        "client_id_template": f"t{unique}-{{site}}-{{device}}",
        "ramp_rate": 2000,
        "backoff_min_s": 0.2,
        "backoff_max_s": 2.0,
    }
    options.update(kw)
    return ConnectionPlan(**options)


def _realtime(devices: int, seconds: float, **kw: Any) -> Any:
    return simple_scenario(
        devices=devices,
        metrics=("temperature",),
        interval_s=1.0,
        duration_s=seconds,
        speed="realtime",
        seed=1,
        **kw,
    )


def _fleet(services: Any, topics: Any, scenario: Any, plan: ConnectionPlan, **kw: Any) -> Any:
    devices = build_devices(scenario, topics, sequence_start=0)
    return AsyncFleet(
        devices,
        settings=mqtt_settings(services),
        plan=plan,
        topics=topics,
        timebase=Timebase(start=datetime.now(UTC), speed=1.0),
        interval_s=scenario.interval_s,
        duration_s=scenario.duration_s,
        **kw,
    )


def _statuses(sub: Collector) -> list[DeviceOnlineEvent | DeviceOfflineEvent]:
    out = []
    for _topic, payload in list(sub.messages):
        event = decode(payload)
        assert isinstance(event, DeviceOnlineEvent | DeviceOfflineEvent)
        out.append(event)
    return out


@contextlib.contextmanager
def _running(fleet: AsyncFleet) -> Iterator[list[Any]]:
    """Run the fleet in a thread; stop it and wait for it on the way out."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(fleet.run_blocking())
        except BaseException as exc:  # surfaced in the test, not lost in the thread
            result.append(exc)

    thread = threading.Thread(target=run, name="aio-fleet", daemon=True)
    thread.start()
    try:
        yield result
    finally:
        fleet.stop()
        thread.join(WAIT_S)
    assert not thread.is_alive(), "the fleet did not stop"
    assert result, "the fleet returned nothing"
    assert not isinstance(result[0], BaseException), result


def test_each_device_connects_as_itself_with_a_birth_and_says_goodbye(services, topics, unique):
    n = 50
    scenario = _realtime(n, 3)
    plan = _plan(unique)
    with Collector(services, topics.subscription(TopicKind.STATUS), f"st-{unique}") as sub:
        fleet = _fleet(services, topics, scenario, plan)
        report = fleet.run_blocking()
        assert wait_until(lambda: sub.count() >= 2 * n, WAIT_S), sub.count()
    events = _statuses(sub)
    births = {e.data.device: e for e in events if isinstance(e, DeviceOnlineEvent)}
    names = {d.device for d in fleet.sims}
    assert set(births) == names
    for device, event in births.items():
        assert event.data.reason == "birth"
        assert event.data.details["client_id"] == f"t{unique}-sim-{device}"
    goodbyes = [e for e in events if isinstance(e, DeviceOfflineEvent)]
    assert sorted(e.data.device for e in goodbyes) == sorted(names)
    assert {e.data.reason for e in goodbyes} == {"shutdown"}
    assert report.connected_after_ramp == n
    assert report.events == n * 3
    assert report.acknowledged == report.events
    assert fleet.drained


def test_drop_fraction_makes_the_broker_publish_the_wills_of_exactly_those_devices(
    services, topics, unique
):
    n = 200
    scenario = _realtime(n, 4)
    plan = _plan(unique, drop_fraction=0.25, drop_after_s=0.5, seed=4)
    with Collector(services, topics.subscription(TopicKind.STATUS), f"st-{unique}") as sub:
        fleet = _fleet(services, topics, scenario, plan)
        report = fleet.run_blocking()
        assert wait_until(lambda: sub.count() >= 2 * n, WAIT_S), sub.count()
    victims = {d.device for d in plan.victims(fleet.sims)}
    assert len(victims) == 50
    offline = [e for e in _statuses(sub) if isinstance(e, DeviceOfflineEvent)]
    wills = {e.data.device for e in offline if e.data.reason == WILL_REASON}
    goodbyes = {e.data.device for e in offline if e.data.reason == "shutdown"}
    assert wills == victims  # published by the broker: the devices sent no DISCONNECT
    assert goodbyes == {d.device for d in fleet.sims} - victims
    assert report.killed == 50
    assert report.connected_at_end == n - 50
    assert report.killed_ticks > 0


def test_devices_reconnect_after_a_broker_restart_and_keep_sending(tmp_path: Path, unique):
    from contract import TopicScheme
    from gateway.localstack.services import free_port, start_mosquitto

    class _Broker:
        mqtt_host = "127.0.0.1"
        mqtt_port = free_port()

    broker, _port = start_mosquitto(tmp_path / "broker", port=_Broker.mqtt_port)
    try:
        n = 30
        topics = TopicScheme(prefix=f"sgtest/{unique}")
        fleet = _fleet(_Broker, topics, _realtime(n, 600), _plan(unique))
        report = fleet.report
        with _running(fleet):
            assert wait_until(lambda: report.phase == "schedule", WAIT_S)
            assert wait_until(lambda: report.acknowledged >= n, WAIT_S)
            broker.stop()
            assert wait_until(lambda: report.connected_now == 0, WAIT_S), report.connected_now
            broker, _port = start_mosquitto(tmp_path / "broker", port=_Broker.mqtt_port)
            assert wait_until(lambda: report.connected_now == n, WAIT_S), report.connected_now
            acked = report.acknowledged
            assert wait_until(lambda: report.acknowledged >= acked + 2 * n, WAIT_S)
        assert report.connections_lost >= n
        assert report.reconnects >= n
        assert report.births >= 2 * n
        assert fleet.drained
    finally:
        broker.stop()


def _content(events: list[TelemetryEvent]) -> dict[tuple[str, int], tuple[Any, ...]]:
    return {
        (e.data.device, e.data.sequence): (
            e.time,
            tuple((r.metric, r.value, r.time) for r in e.data.readings),
        )
        for e in events
    }


def test_the_readings_are_those_the_thread_runner_sends_for_the_same_seed(services, topics, unique):
    scenario = simple_scenario(
        devices=20,
        metrics=("temperature", "humidity", "door"),
        interval_s=10.0,
        duration_s=1200.0,
        speed="max",
        start=START,
        seed=7,
        random_anomalies=(parse_anomaly_spec("all~6"),),
    )
    # The thread runner, into memory: what it hands to its MQTT links.
    threads_labels = MemoryLabelSink()
    memory = MemoryPublisher()
    Fleet(
        build_devices(scenario, topics, sequence_start=0),
        publisher=memory,
        topics=topics,
        timebase=Timebase(start=START, speed=None),
        interval_s=10.0,
        duration_s=1200.0,
        label_sinks=[threads_labels],
    ).run()
    expected = [decode(m.payload) for m in memory.messages]

    aio_labels = MemoryLabelSink()
    with Collector(services, topics.subscription(TopicKind.TELEMETRY), f"tm-{unique}") as sub:
        fleet = AsyncFleet(
            build_devices(scenario, topics, sequence_start=0),
            settings=mqtt_settings(services),
            plan=_plan(unique),
            topics=topics,
            timebase=Timebase(start=START, speed=None),
            interval_s=10.0,
            duration_s=1200.0,
            label_sinks=[aio_labels],
        )
        report = fleet.run_blocking()
        assert wait_until(lambda: sub.count() >= len(expected), WAIT_S), sub.count()
    received = [decode(p) for _t, p in sub.messages]
    assert all(isinstance(e, TelemetryEvent) for e in received)
    assert report.events == len(expected) > 0
    assert _content(received) == _content(expected)  # type: ignore[arg-type]
    assert threads_labels.labels  # the scenario does inject anomalies
    assert sorted(map(repr, aio_labels.labels)) == sorted(map(repr, threads_labels.labels))


def test_no_callback_blocks_the_event_loop_in_asyncio_debug_mode(
    services, topics, unique, tmp_path, caplog, monkeypatch
):
    # The calls that block by nature are caught on the loop's thread whatever they
    # take; asyncio's wall-clock report of slow callbacks is printed, not asserted.
    slow_s = 0.5
    scenario = _realtime(200, 4, random_anomalies=(parse_anomaly_spec("all~60"),))
    labels_file = tmp_path / "labels.jsonl"
    sink = JsonLinesLabelSink(labels_file)
    fleet = _fleet(
        services,
        topics,
        scenario,
        _plan(unique, drop_fraction=0.1, drop_after_s=1.0, rejoin_after_s=1.0),
        label_sinks=[sink],
        labels_topic=labels_topic(topics.prefix),
        progress=lambda r: f"progress {r.events}",
        progress_every_s=0.5,
    )

    loop_thread: list[int] = []
    blocking: list[str] = []

    def on_the_loop() -> bool:
        return bool(loop_thread) and threading.get_ident() == loop_thread[0]

    def watch(name: str, real: Any) -> Any:
        def watched(*args: Any, **kwargs: Any) -> Any:
            if on_the_loop():
                blocking.append(name)
            return real(*args, **kwargs)

        return watched

    original_run = fleet.run

    async def run() -> Any:
        loop_thread.append(threading.get_ident())
        return await original_run()

    fleet.run = run  # type: ignore[method-assign]
    # Calls that block whatever their duration: none may run on the loop's thread.
    monkeypatch.setattr(time, "sleep", watch("time.sleep", time.sleep))
    monkeypatch.setattr(socket, "create_connection", watch("connect", socket.create_connection))
    monkeypatch.setattr(socket, "getaddrinfo", watch("getaddrinfo", socket.getaddrinfo))
    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            report = fleet.run_blocking(debug=True, slow_callback_s=slow_s)
    finally:
        sink.close()
    said = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    # "Executing <Task ...> took 0.7 seconds" measures wall time, which a loaded 2-core
    # machine stretches whatever the code does: printed, not asserted (a flaky test is
    # a broken one). The blocking calls above are caught whatever they take, and
    # anything else debug mode reports (a coroutine never awaited, a task destroyed
    # while pending, a non-thread-safe call) fails the test.
    slow = [m for m in said if m.startswith("Executing ") and " took " in m]
    print(f"{len(slow)} callbacks over {slow_s} s of wall time", *slow[:5], sep="\n")
    assert not [m for m in said if m not in slow], said[:5]
    assert not blocking, sorted(set(blocking))
    assert report.events > 0
    assert report.killed == 20
    assert report.reconnects >= 20  # they rejoined
    assert len(read_labels(labels_file.read_text().splitlines())) == report.labels > 0


def test_a_connection_that_breaks_on_the_way_out_leaves_no_unretrieved_future(services, unique):
    # aiomqtt keeps a broken connection's error in a future that only its message
    # iterator reads; a device that leaves without iterating used to leave it unread,
    # and asyncio logged a traceback per device ("Future exception was never
    # retrieved"), thousands at the end of a big fleet.
    import asyncio
    import gc

    from simulators.aio_link import connect_device

    said: list[str] = []

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: said.append(str(context["message"])))
        async with connect_device(mqtt_settings(services), client_id=f"t{unique}-brk") as link:
            link.abort()
            client = link._client
            for _ in range(int(WAIT_S / 0.05)):  # the reader sees the end of the stream
                if client._disconnected.done():
                    break
                await asyncio.sleep(0.05)
            broke = client._disconnected.done()
            del client
        del link
        gc.collect()
        await asyncio.sleep(0)
        return broke

    assert asyncio.run(main()), "the client never saw its connection break"
    assert said == []


def test_the_drain_does_not_wait_for_devices_that_never_connected(services, topics, unique):
    # Every other device connects from an address this host does not have (192.0.2.1,
    # TEST-NET-1): it never holds a connection, as past the open-file limit, and keeps
    # its readings queued. The drain settles everything the others sent and counts the
    # rest as stranded instead of waiting its whole timeout for them.
    n = 20
    scenario = _realtime(n, 2)
    plan = _plan(unique, bind_addresses=("127.0.0.1", "192.0.2.1"), ramp_timeout_s=1.0)
    fleet = _fleet(services, topics, scenario, plan, drain_timeout_s=WAIT_S)
    report = fleet.run_blocking()
    assert report.connected_after_ramp == n // 2
    assert report.connect_failures > 0
    assert report.stranded > 0
    assert report.acknowledged + report.stranded == report.events
    assert fleet.drained
