"""The alarm sink: alarm events to MQTT (QoS 1) and InfluxDB, active summaries retained.

For each batch, ``write_batch``

1. publishes every alarm event on ``{prefix}/{site}/{device}/alarms`` (QoS 1, CloudEvents
   JSON from :func:`~contract.alarms.encode_alarm`);
2. publishes the latest :class:`~dataflows.flow.ActiveAlarms` of each device of the
   batch, retained, on ``{prefix}/{site}/{device}/alarms/active`` (a JSON document,
   see :func:`active_document`), so a dashboard that subscribes late sees what is
   active now; an empty list when nothing is;
3. writes the events to the InfluxDB ``alarms`` measurement;
4. waits for every PUBACK.

It returns only when all of that is done, so the MQTT source, which acknowledges the
input messages after the epoch, never acknowledges a message whose alarm is not out.

A publish the broker *refuses* (MQTT 5 PUBACK reason code 0x80 or more: its ACL does
not let the gateway write that topic) is not passed off as delivered: it becomes a dead
letter ``publish_refused`` in the ``deadletters`` measurement, carrying the topic, the
reason code and the message, is logged, and is counted in
``sensorgate_mqtt_refused_total``. The flow goes on (the alarm itself is stored in
``alarms``); retrying would not help until the ACL is fixed (docs/security.md).
A re-delivery after a crash can publish an alarm event twice: its ``id`` is the same
(derived from the alarm id, the type and the event time), so consumers dedupe by id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from contract import DeadLetterEvent, DeadLetterReason, TopicScheme
from contract.alarms import encode_alarm
from contract.errors import BrokerError
from dataflows.flow import ActiveAlarms, AlarmOutput
from edge.mqtt import MqttLink, MqttSettings, PublishTicket
from gateway.connectors.alarm_summary import ACTIVE_SUFFIX, ACTIVE_TYPE, active_topic
from gateway.influx.lineprotocol import alarm_line, deadletter_line
from gateway.influx.writer import PointWriter
from gateway.observability.metrics import GatewayMetrics

__all__ = ["ACTIVE_SUFFIX", "ACTIVE_TYPE", "AlarmSink", "active_document", "active_topic"]

WriterFactory = Callable[[], PointWriter]


def active_document(summary: ActiveAlarms) -> dict[str, Any]:
    """Return the retained summary: ``{"type", "site", "device", "alarms": [AlarmData...]}``."""
    return {
        "type": ACTIVE_TYPE,
        "site": summary.site,
        "device": summary.device,
        "alarms": [a.model_dump(mode="json", exclude_none=True) for a in summary.alarms],
    }


class _AlarmPartition(StatelessSinkPartition[AlarmOutput]):
    def __init__(
        self,
        writer: PointWriter,
        link: MqttLink,
        topics: TopicScheme,
        ack_timeout: float,
        metrics: GatewayMetrics | None,
        gateway_id: str = "gateway",
    ) -> None:
        self._writer = writer
        self._link = link
        self._topics = topics
        self._ack_timeout = ack_timeout
        self._metrics = metrics
        self._gateway_id = gateway_id

    def write_batch(self, items: list[AlarmOutput]) -> None:
        started = time.monotonic()
        tickets: list[PublishTicket] = []
        sent: list[bytes] = []
        lines = []
        latest: dict[tuple[str, str], ActiveAlarms] = {}
        for item in items:
            if isinstance(item, ActiveAlarms):
                latest[(item.site, item.device)] = item  # only the newest one matters
                continue
            d = item.data
            sent.append(encode_alarm(item))
            tickets.append(self._link.publish(self._topics.alarms(d.site, d.device), sent[-1]))
            lines.append(alarm_line(item))
        for (site, device), summary in latest.items():
            sent.append(json.dumps(active_document(summary), separators=(",", ":")).encode())
            tickets.append(
                self._link.publish(active_topic(self._topics, site, device), sent[-1], retain=True)
            )
        if lines:
            self._writer.write(lines)
        for ticket in tickets:
            if not self._link.wait_acknowledged(ticket, self._ack_timeout):
                raise BrokerError(
                    f"the broker did not acknowledge an alarm publish within"
                    f" {self._ack_timeout:.0f} s"
                )
        self._dead_letter_refused(tickets, sent)
        if self._metrics is not None:
            for item in items:
                if not isinstance(item, ActiveAlarms):
                    transition = item.type.rsplit(".", 2)[1]
                    self._metrics.alarm_events.labels(transition, item.data.kind).inc()
            self._metrics.alarm_publish_seconds.observe(time.monotonic() - started)

    def _dead_letter_refused(self, tickets: list[PublishTicket], sent: list[bytes]) -> None:
        # The link has logged and counted each refusal; keep what was refused.
        refused = []
        for ticket, body in zip(tickets, sent, strict=True):
            refusal = ticket.refusal
            if refusal is not None:
                refused.append(
                    DeadLetterEvent.create(
                        reason=DeadLetterReason.PUBLISH_REFUSED,
                        error=str(refusal),
                        topic=refusal.topic,
                        payload=body,
                        gateway=self._gateway_id,
                        keep_bytes=None,
                    )
                )
        if refused:
            self._writer.write([deadletter_line(event) for event in refused])
            if self._metrics is not None:
                self._metrics.deadletters.labels(DeadLetterReason.PUBLISH_REFUSED.value).inc(
                    len(refused)
                )

    def close(self) -> None:
        self._writer.close()
        self._link.stop()


class AlarmSink(DynamicSink[AlarmOutput]):
    """Publishes alarm events and retained summaries, and stores events in ``alarms``."""

    def __init__(
        self,
        writer_factory: WriterFactory,
        mqtt: MqttSettings,
        topics: TopicScheme,
        *,
        metrics: GatewayMetrics | None = None,
        ack_timeout: float = 30.0,
        gateway_id: str = "gateway",
    ) -> None:
        self._factory = writer_factory
        self._mqtt = mqtt
        self._topics = topics
        self._metrics = metrics
        self._ack_timeout = ack_timeout
        self._gateway_id = gateway_id

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _AlarmPartition:
        """Give each worker its own writer and MQTT client (persistent session)."""
        settings = self._mqtt.model_copy(
            update={"client_id": f"{self._mqtt.client_id}-{worker_index}", "clean_session": False}
        )
        hook = None if self._metrics is None else self._metrics.mqtt_refusal("alarms")
        link = MqttLink(settings, on_refused=hook)
        link.start()
        return _AlarmPartition(
            self._factory(), link, self._topics, self._ack_timeout, self._metrics, self._gateway_id
        )
