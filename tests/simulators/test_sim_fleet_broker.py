"""A fleet of 1,000 devices through the real broker for 20 s: every event, in order."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from sim_helpers import Collector, mqtt_settings

from contract import TelemetryEvent, TopicKind, decode
from simulators.fleet import Fleet, wait_until
from simulators.labels import MemoryLabelSink, MqttLabelSink, labels_topic
from simulators.links import LinkPool
from simulators.multiplexed import MultiplexedLinks
from simulators.scenario import build_devices, simple_scenario
from simulators.timebase import Timebase, resolve_start

WAIT_S = 30.0  # generous: the test machine is shared
DEVICES = 1_000
SECONDS = 20.0


@pytest.mark.integration
def test_1000_devices_for_60_s_keep_their_schedule(services, topics, unique, record_property):
    scenario = simple_scenario(
        devices=DEVICES,
        metrics=("temperature", "humidity"),
        interval_s=1.0,
        duration_s=SECONDS,
        speed="realtime",
        seed=1,
        random_anomalies=(),
    )
    devices = build_devices(scenario, topics, sequence_start=0)
    with Collector(services, topics.subscription(TopicKind.TELEMETRY), f"sub-{unique}") as sub:
        pool = LinkPool(mqtt_settings(services), size=1, client_prefix=f"fleet-{unique}")
        pool.start()
        try:
            fleet = Fleet(
                devices,
                publisher=pool,
                topics=topics,
                timebase=Timebase(start=resolve_start(None, 1.0, None), speed=1.0),
                interval_s=1.0,
                duration_s=SECONDS,
            )
            report = fleet.run()
            assert fleet.drain(30)
        finally:
            pool.stop()
        assert wait_until(lambda: sub.count() >= report.events, 30), (sub.count(), report.events)

    figures = {
        "devices": DEVICES,
        "events": report.events,
        "wall_s": round(report.wall_s, 2),
        "events_per_s": round(report.events_per_s, 1),
        **{f"lag_{k}": v for k, v in report.lag.as_dict().items()},
    }
    record_property("fleet_lag", json.dumps(figures))
    print(f"\nfleet {DEVICES} x 1/s for {SECONDS:.0f} s:", json.dumps(figures))

    assert report.events == DEVICES * int(SECONDS)
    assert report.acknowledged == report.events
    # The run covers its whole span (a lower bound the pacing guarantees). How late
    # events were is a figure (printed above), not an assertion: it depends on the
    # machine, and `sensorgate simulate --json` measures it.
    assert report.wall_s >= SECONDS - 1.5, figures
    seqs: dict[str, list[int]] = defaultdict(list)
    for _topic, payload in sub.messages:
        event = decode(payload)
        assert isinstance(event, TelemetryEvent)
        seqs[event.data.device].append(event.data.sequence)
    assert len(seqs) == DEVICES
    assert all(sorted(s) == list(range(int(SECONDS))) for s in seqs.values())


@pytest.mark.integration
def test_per_device_connections_and_labels_on_the_labels_topic(services, topics, unique):
    # 400 connections: beyond what a paho thread per client (select()) can serve.
    n = 400
    scenario = simple_scenario(
        devices=n,
        metrics=("vibration",),
        interval_s=1.0,
        duration_s=120,
        speed="max",
        seed=2,
        random_anomalies=(),
        start=resolve_start(None, None, 120),
    ).override(anomalies=[{"kind": "spike", "at_s": 30, "metric": "vibration"}])
    devices = build_devices(scenario, topics, sequence_start=0)
    ids = [f"sim-{unique}-{d.device}" for d in devices]
    with Collector(services, labels_topic(topics.prefix), f"lab-{unique}") as sub:
        pool = MultiplexedLinks(mqtt_settings(services), client_ids=ids)
        pool.start()
        try:
            assert pool.size == pool.connected == n
            memory = MemoryLabelSink()
            fleet = Fleet(
                devices,
                publisher=pool,
                topics=topics,
                timebase=Timebase(start=scenario.start, speed=None),
                interval_s=1.0,
                duration_s=120,
                label_sinks=[memory, MqttLabelSink(pool, labels_topic(topics.prefix))],
            )
            report = fleet.run()
            assert fleet.drain(30)
        finally:
            pool.stop()
        assert wait_until(lambda: sub.count() >= n, 10)
    assert report.events == n * 120
    assert report.acknowledged == report.events + n  # the labels are acknowledged too
    published = sorted(json.loads(p)["device"] for _t, p in sub.messages)
    assert published == sorted(label.device for label in memory.labels)
    assert {json.loads(p)["kind"] for _t, p in sub.messages} == {"spike"}


@pytest.mark.integration
def test_multiplexed_links_reconnect_after_a_lost_connection(services, unique):
    import socket

    pool = MultiplexedLinks(
        mqtt_settings(services), client_ids=[f"mx-{unique}-{i}" for i in range(3)]
    )
    pool.start()
    try:
        pool.publish("sgtest/x", b"1", key=0)
        assert pool.wait_acknowledged(5)
        pool._links[1].client.socket().shutdown(socket.SHUT_RDWR)  # the network goes away
        assert wait_until(lambda: pool.connected < 3, 5)
        assert wait_until(lambda: pool.connected == 3, 10)  # and comes back by itself
        for key in range(3):
            pool.publish("sgtest/x", b"2", key=key)
        assert pool.wait_acknowledged(5)
        assert pool.acknowledged == 4
    finally:
        pool.stop()
    assert pool.connected == 0


@pytest.mark.integration
def test_multiplexed_links_go_on_with_what_they_hold_at_the_open_file_limit(services, unique):
    import os
    import resource

    n = 40
    pool = MultiplexedLinks(
        mqtt_settings(services), client_ids=[f"mf-{unique}-{i}" for i in range(n)]
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 15, hard))  # room for ~15 sockets
    try:
        pool.start(timeout=WAIT_S)  # used to raise at the first EMFILE
        assert 0 < pool.opened < n
        assert pool.reached == pool.connected == pool.opened
        assert pool.open_error is not None
        assert "EMFILE" in pool.open_error
        for key in range(n):
            pool.publish("sgtest/x", b"1", key=key)
        assert pool.wait_acknowledged(WAIT_S)  # all but the never-connected links'
        assert pool.stranded == n - pool.opened
        assert pool.acknowledged == pool.opened
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        pool.stop()
