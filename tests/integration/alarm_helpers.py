"""Helpers for alarm integration tests: collect alarm events and retained summaries."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from contract.alarms import AlarmEvent, decode_alarm
from edge.mqtt import MqttLink, MqttSettings
from gateway.localstack.services import ServiceEndpoints


class AlarmCollector:
    """Subscribes to ``{prefix}/+/+/alarms`` (and ``.../alarms/active``) and keeps what arrives.

    Each alarm event is kept with the wall time it arrived, for latency checks.
    """

    def __init__(self, services: ServiceEndpoints, prefix: str, client_id: str) -> None:
        self.events: list[tuple[float, AlarmEvent]] = []
        self.active: dict[str, dict[str, Any]] = {}
        """topic -> last retained summary document."""
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._filters = [f"{prefix}/+/+/alarms", f"{prefix}/+/+/alarms/active"]
        settings = MqttSettings(
            host=services.mqtt_host, port=services.mqtt_port, client_id=client_id
        )
        self.link = MqttLink(settings, on_connect=self._subscribe, on_message=self._keep)
        self.link.client.on_subscribe = lambda *_a: self._subscribed.set()

    def _subscribe(self, link: MqttLink) -> None:
        # One SUBSCRIBE, so the one SUBACK means every filter is in place.
        link.client.subscribe([(f, 1) for f in self._filters])

    def _keep(self, msg: Any) -> None:
        arrived = time.time()
        payload = bytes(msg.payload)
        with self._lock:
            if msg.topic.endswith("/active"):
                self.active[msg.topic] = json.loads(payload)
            else:
                self.events.append((arrived, decode_alarm(payload)))

    def __enter__(self) -> AlarmCollector:
        self.link.start()
        assert self._subscribed.wait(10), "no SUBACK from the broker"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.link.stop()

    def snapshot(self) -> list[AlarmEvent]:
        """The alarm events so far, in arrival order."""
        with self._lock:
            return [e for _, e in self.events]

    def of(self, kind: str) -> list[AlarmEvent]:
        """Events of one transition (``raised``, ``cleared``, ...)."""
        return [e for e in self.snapshot() if e.type.split(".")[-2] == kind]
