"""Helpers of the edge tests: fixture sysfs trees, waiting, a subscriber (fixtures too)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contract import TopicScheme
from edge.config import AgentConfig, load_config
from tests.waiting import wait_for

W1_OK = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
W1_BAD_CRC = "72 01 4b 46 7f ff 0e 10 57 : crc=a1 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
W1_POWER_ON = "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n"
W1_NEGATIVE = "5e ff 4b 46 7f ff 02 10 b6 : crc=b6 YES\n5e ff 4b 46 7f ff 02 10 b6 t=-10125\n"


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    """A fixture tree with thermal zones, 1-Wire probes and a /proc."""
    root = tmp_path / "sys"
    thermal = root / "class" / "thermal"
    for name, temp in [("thermal_zone0", "48312\n"), ("thermal_zone1", "51000\n")]:
        (thermal / name).mkdir(parents=True)
        (thermal / name / "temp").write_text(temp)
        (thermal / name / "type").write_text("cpu-thermal\n")
    w1 = root / "bus" / "w1" / "devices"
    for serial, text in [
        ("28-0316a2795bff", W1_OK),
        ("28-0416b1e3a4ff", W1_BAD_CRC),
        ("28-0516c2f0b1ff", W1_POWER_ON),
        ("28-0616d3a1c2ff", W1_NEGATIVE),
    ]:
        (w1 / serial).mkdir(parents=True)
        (w1 / serial / "w1_slave").write_text(text)
    (w1 / "w1_bus_master1").mkdir()
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "loadavg").write_text("0.52 0.58 0.59 1/389 12345\n")
    (proc / "meminfo").write_text(
        "MemTotal:        3884096 kB\nMemFree:          212340 kB\n"
        "MemAvailable:    2912072 kB\nBuffers:          123456 kB\n"
    )
    (proc / "net" / "dev").write_text(
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets"
        " errs drop fifo colls carrier compressed\n"
        "    lo:  123456    1000    0    0    0     0          0         0   123456    1000"
        "    0    0    0     0       0          0\n"
        "  eth0: 98765432   65432    0    0    0     0          0       12  1234567    8765"
        "    0    0    0     0       0          0\n"
        " wlan0:    1000      10    0    0    0     0          0         0     2000      20"
        "    0    0    0     0       0          0\n"
    )
    return tmp_path


def make_config(tmp_path: Path, **overrides: Any) -> AgentConfig:
    """An agent config with one fast simulated sensor and a private outbox."""
    data: dict[str, Any] = {
        "site": "site-a",
        "device": "dev-1",
        "sensors": [
            {"id": "sim", "driver": "simulated", "interval_s": 1.0, "options": {"seed": 1}}
        ],
        "outbox": {"path": str(tmp_path / "outbox.db")},
    }
    data.update(overrides)
    return load_config(None, overrides=data)


class Subscriber:
    """A paho subscriber that records every message (topic, payload, retain)."""

    def __init__(
        self,
        host: str,
        port: int,
        topic_filter: str,
        *,
        client_id: str = "",
        clean_session: bool = True,
        username: str | None = None,
        password: str | None = None,
        tls: tuple[str, str, str] | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self._filter = topic_filter
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session if client_id else True,
        )
        self.client.reconnect_delay_set(0.05, 0.2)  # type: ignore[arg-type]
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:  # (ca_file, cert_file, key_file)
            self.client.tls_set(ca_certs=tls[0], certfile=tls[1], keyfile=tls[2])
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.connect_async(host, port)
        self.client.loop_start()
        wait_for(self.subscribed.is_set, 10, "the test subscriber to subscribe")

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe(self._filter, qos=1)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        """A copy of what arrived so far."""
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber_factory() -> Iterator[Callable[..., Subscriber]]:
    """Make subscribers that are closed at the end of the test."""
    made: list[Subscriber] = []

    def make(*args: Any, **kwargs: Any) -> Subscriber:
        sub = Subscriber(*args, **kwargs)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


@pytest.fixture
def edge_topics(topics: TopicScheme) -> TopicScheme:
    """The shared unique topic scheme (alias, for readability)."""
    return topics


def agent_overrides(
    tmp_path: Path, prefix: str, port: int, *, interval: float = 0.01, **extra: Any
) -> dict[str, Any]:
    """Config overrides for an agent on a loopback broker, sampling fast."""
    data: dict[str, Any] = {
        "site": "itest",
        "device": f"dev-{tmp_path.name[-12:].replace('/', '_')}",
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "topic_prefix": prefix,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.5,
            "keepalive_s": 5,
        },
        "sensors": [
            {"id": "sim", "driver": "simulated", "interval_s": interval, "options": {"seed": 5}},
            {
                "id": "sim2",
                "driver": "simulated",
                "interval_s": interval * 3,
                "options": {"seed": 9, "metric": "humidity", "unit": "%RH"},
            },
        ],
        "batch": {"max_readings": 10, "max_age_s": 0.2},
        "outbox": {"path": str(tmp_path / "outbox.db"), "max_rate": 0},
        "status": {"heartbeat_s": 1.0},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


class AgentThread:
    """An in-process agent running in a thread, with every sampled reading recorded."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        from edge.agent import Agent

        self.sampled: list[Any] = []
        self._lock = threading.Lock()
        self.config = load_config(None, overrides=overrides)
        self.agent = Agent(self.config, on_readings=self._tap)
        self.thread = threading.Thread(target=self.agent.run, name="agent-under-test", daemon=True)

    def _tap(self, readings: list[Any]) -> None:
        with self._lock:
            self.sampled.extend(readings)

    def readings(self) -> list[Any]:
        """A copy of what was sampled so far."""
        with self._lock:
            return list(self.sampled)

    def __enter__(self) -> AgentThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop the agent and wait for its clean shutdown."""
        self.agent.stop()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "the agent did not stop"

    def __exit__(self, *_exc: object) -> None:
        if self.thread.is_alive():
            self.stop()


def received_events(messages: list[tuple[str, bytes, bool]], topic: str) -> list[Any]:
    """Decode the telemetry events among ``messages`` (in arrival order)."""
    from contract.codec import decode

    return [decode(p) for t, p, _r in messages if t == topic]


def first_seen(events: list[Any]) -> list[Any]:
    """Events in arrival order, duplicates (QoS 1 re-deliveries) removed."""
    seen: set[int] = set()
    out = []
    for event in events:
        if event.data.sequence not in seen:
            seen.add(event.data.sequence)
            out.append(event)
    return out


def publish_retained(host: str, port: int, topic: str, payload: bytes) -> None:
    """Publish one retained QoS 1 message and wait for its PUBACK."""
    from edge.mqtt import MqttLink, MqttSettings

    with MqttLink(MqttSettings(host=host, port=port)) as link:
        assert link.publish(topic, payload, qos=1, retain=True).wait(5.0)
