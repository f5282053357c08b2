"""Points InfluxDB refuses as bad data become dead letters, like any other reject.

The resilient writer isolates each refused line and calls ``on_rejected(line, error)``;
:class:`WriteRejectionReporter` turns that into a :class:`~contract.DeadLetterEvent`
with reason ``write_rejected`` and the line as its payload, publishes it on the
dead-letter topic (QoS 1, waiting for the broker's acknowledgement) and stores it in
the ``deadletters`` measurement: through the writer that refused the line, or, with
retention policies (the refusing writer writes to another policy), through a writer to
the dead letters' policy, made on the first rejection. The event's ``topic`` is
``influxdb/<measurement>``: the line never came from one MQTT topic.

A refused ``deadletters`` line is published but not stored again, so that a dead
letter InfluxDB cannot take never loops. A dead letter the *broker* refuses (MQTT 5
PUBACK reason code: its ACL) is logged with the topic and counted by the link, and
stays stored in ``deadletters``.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from contract import DeadLetterEvent, DeadLetterReason, encode
from contract.errors import BrokerError
from edge.mqtt import MqttLink, MqttSettings, Refusal
from gateway.influx.lineprotocol import deadletter_line
from gateway.influx.resilient import RejectHandler
from gateway.settings import GatewaySettings


class _Rejecting(Protocol):
    """A writer that reports the lines InfluxDB refuses (resilient or pipelined)."""

    on_rejected: RejectHandler | None

    def write(self, lines: Sequence[str]) -> None:
        """Write lines (nanosecond timestamps), returning once they are durable."""


class _Store(_Rejecting, Protocol):
    """The writer of the dead letters' own policy, which the reporter owns and closes."""

    def close(self) -> None:
        """Release the writer."""


W = TypeVar("W", bound=_Rejecting)

__all__ = ["WriteRejectionReporter"]

log = logging.getLogger(__name__)

# The measurement ends at the first comma or space that is not escaped.
_MEASUREMENT = re.compile(r"(?:[^,\s\\]|\\.)*")


def measurement_of(line: str) -> str:
    """Return the (still escaped) measurement name of a line-protocol line."""
    match = _MEASUREMENT.match(line)
    return match.group(0) if match and match.group(0) else "?"


class WriteRejectionReporter:
    """Publishes and stores a dead letter for each point InfluxDB refused.

    One reporter serves every writer of a process; its MQTT connection is opened on
    the first rejection (rejections are rare) and closed by :meth:`close`.
    """

    def __init__(
        self,
        mqtt: MqttSettings,
        topic: str,
        *,
        gateway_id: str,
        ack_timeout: float = 30.0,
        store: Callable[[], _Store] | None = None,
        on_refused: Callable[[Refusal], None] | None = None,
    ) -> None:
        # A clean session under a fresh id: we wait for each PUBACK, so nothing is
        # left for a persistent session to keep, and two gateways never collide.
        self._mqtt = mqtt.model_copy(
            update={"client_id": f"{mqtt.client_id}-{uuid.uuid4().hex[:8]}", "clean_session": True}
        )
        self._topic = topic
        self._gateway_id = gateway_id
        self._ack_timeout = ack_timeout
        self._link: MqttLink | None = None
        self._lock = threading.Lock()
        self._store_factory = store
        """Makes the writer dead letters are stored through (None: the refusing one)."""
        self._store: _Store | None = None
        self.on_refused = on_refused
        """Called with each dead letter the broker refuses (a metric hook)."""

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> WriteRejectionReporter:
        """Build the gateway's reporter: its broker, dead-letter topic, id and store."""
        from gateway.influx.layout import StorageLayout
        from gateway.influx.resilient import make_resilient_writer

        layout = StorageLayout.of(settings.influx)
        store = None
        if layout.active:

            def store() -> _Store:
                return make_resilient_writer(settings.influx, policy=layout.policy("deadletters"))

        return cls(
            settings.mqtt.link_settings(f"{settings.mqtt.client_id_prefix}-rejections"),
            settings.topics.deadletter,
            gateway_id=settings.gateway_id,
            store=store,
        )

    def _store_for(self, writer: _Rejecting) -> _Rejecting:
        if self._store_factory is None:
            return writer
        with self._lock:
            if self._store is None:
                self._store = self.bind(self._store_factory())
            return self._store

    def bind(self, writer: W) -> W:
        """Make ``writer`` report its refused lines here; return it."""

        def on_rejected(line: str, error: str) -> None:
            self.report(line, error, writer)

        writer.on_rejected = on_rejected
        return writer

    def _connected_link(self) -> MqttLink:
        with self._lock:
            if self._link is None:
                link = MqttLink(self._mqtt, on_refused=self.on_refused)
                link.start()
                self._link = link
            return self._link

    def report(self, line: str, error: str, writer: _Rejecting | None = None) -> None:
        """Publish the dead letter for ``line`` and store it through ``writer``."""
        measurement = measurement_of(line)
        event = DeadLetterEvent.create(
            reason=DeadLetterReason.WRITE_REJECTED,
            error=error,
            topic=f"influxdb/{measurement}",
            payload=line.encode("utf-8"),
            gateway=self._gateway_id,
        )
        ticket = self._connected_link().publish(self._topic, encode(event), qos=1)
        if writer is not None:
            if measurement == "deadletters":
                log.error("InfluxDB refused a dead letter; published only: %s", error)
            else:
                self._store_for(writer).write([deadletter_line(event)])
        if not self._connected_link().wait_acknowledged(ticket, self._ack_timeout):
            raise BrokerError(
                f"the broker did not acknowledge a write_rejected dead letter on {self._topic!r}"
                f" within {self._ack_timeout:.0f} s"
            )

    def close(self) -> None:
        """Close the MQTT connection and the dead letters' writer, if they were opened."""
        with self._lock:
            if self._link is not None:
                self._link.stop()
                self._link = None
            if self._store is not None:
                self._store.close()
                self._store = None
