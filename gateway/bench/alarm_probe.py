"""The probe of ``sensorgate bench-alarms``: one device that crosses a threshold on purpose.

It publishes its readings on one MQTT link and listens for its own alarm events on
another, noting when each arrives (monotonic clock, same host as the publish).
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

__all__ = ["AlarmProbe"]


class AlarmProbe:
    """Publishes probe readings and receives the probe device's alarm events."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        from contract import TopicScheme
        from edge.mqtt import MqttLink, MqttSettings

        self.topics = TopicScheme(prefix)
        self.topic = self.topics.telemetry("bench", "probe")
        self.seq = 0
        self._cond = threading.Condition()
        self.received: list[tuple[float, Any]] = []
        self._subscribed = threading.Event()
        alarms = self.topics.alarms("bench", "probe")
        self.sub = MqttLink(
            MqttSettings(host=host, port=port, client_id=f"bench-alarms-sub-{os.getpid()}"),
            on_connect=lambda link: link.subscribe(alarms, qos=1),
            on_message=self._on_message,
        )
        self.sub.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.pub = MqttLink(
            MqttSettings(host=host, port=port, client_id=f"bench-alarms-pub-{os.getpid()}")
        )

    def _on_message(self, msg: Any) -> None:
        from contract.alarms import decode_alarm

        arrived = time.monotonic()
        event = decode_alarm(bytes(msg.payload))
        with self._cond:
            self.received.append((arrived, event))
            self._cond.notify_all()

    def start(self) -> None:
        """Connect both links; wait for the SUBACK of the alarm topic."""
        self.sub.start()
        if not self._subscribed.wait(10):
            raise TimeoutError("no SUBACK for the probe's alarm topic")
        self.pub.start()

    def stop(self) -> None:
        """Disconnect both links."""
        self.sub.stop()
        self.pub.stop()

    def send(self, value: float) -> tuple[str, float]:
        """Publish one reading; return the event id and the monotonic publish time."""
        from contract import Reading, TelemetryEvent, encode

        self.seq += 1
        event = TelemetryEvent.create(
            site="bench",
            device="probe",
            sequence=self.seq,
            readings=[Reading(sensor="p", metric="level", value=value, time=datetime.now(UTC))],
        )
        body = encode(event)
        sent = time.monotonic()
        self.pub.publish(self.topic, body, qos=1)
        return event.id, sent

    def wait_for(self, transition: str, cause: str, timeout: float) -> float | None:
        """Wait for the event of ``transition`` caused by event ``cause``; its arrival time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for arrived, event in self.received:
                    data = event.data
                    if (
                        event.type.split(".")[-2] == transition
                        and data.rule == "probe-high"
                        and data.cause_event_id == cause
                    ):
                        return arrived
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
