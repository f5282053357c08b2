"""One MQTT connection over paho-mqtt v2: :class:`MqttLink`, the project's paho adapter.

It connects in the background, reconnects with capped exponential backoff and jitter
(:class:`~edge.mqtt.backoff.Backoff`), publishes with QoS 1 by default, subscribes,
unsubscribes (waiting for the UNSUBACK), tells whether the broker resumed a session
(:attr:`MqttLink.session_present`), and receives: with ``manual_ack`` the owner
acknowledges what it took once it is safe (:meth:`MqttLink.ack`), and with
``buffered_reads`` the socket is read in large chunks (:mod:`edge.mqtt.buffered`).
Paho errors are translated into :class:`~contract.errors.BrokerError` here and nowhere
else.

It speaks MQTT 5 unless told otherwise, so that a broker's refusal is visible: a
publish the ACL denies comes back as a PUBACK with a reason code of 0x80 or more
(0x87 "Not authorized"), where MQTT 3.1.1 acknowledges it as if it were delivered. Each
refusal is logged with its topic, counted in :attr:`MqttLink.refused`, handed to
``on_refused``, and kept on the publish's :class:`~edge.mqtt.ticket.PublishTicket`; a
refused subscription (SUBACK) is logged and handed over the same way, and the filters
granted go to ``on_subscribed``.

Paho's own backoff doubles a fixed delay with no jitter, so a fleet that lost its
broker reconnects in lock-step. The link draws each delay from its backoff instead and
hands it to paho just before paho waits (paho calls ``on_disconnect`` or
``on_connect_fail`` right before its reconnect wait, and the wait reads the delay set
by ``reconnect_delay_set``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from contract.errors import BrokerError
from edge.mqtt.answers import BrokerAnswers
from edge.mqtt.backoff import Backoff
from edge.mqtt.client import make_client
from edge.mqtt.settings import MqttSettings, Refusal, Will
from edge.mqtt.ticket import PublishTicket

__all__ = ["MessageHandler", "MqttLink"]

log = logging.getLogger(__name__)

MessageHandler = Callable[[mqtt.MQTTMessage], None]

_OK = MQTTErrorCode.MQTT_ERR_SUCCESS
_NO_CONN = MQTTErrorCode.MQTT_ERR_NO_CONN


class MqttLink:
    """One MQTT connection that reconnects by itself.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        will: Will | None = None,
        on_connect: Callable[[MqttLink], None] | None = None,
        on_message: MessageHandler | None = None,
        on_publish: Callable[[int], None] | None = None,
        on_refused: Callable[[Refusal], None] | None = None,
        on_subscribed: Callable[[list[str]], None] | None = None,
        manual_ack: bool = False,
        buffered_reads: bool = False,
    ) -> None:
        """Set the link up (nothing is sent before :meth:`start`).

        ``on_connect`` runs on every (re)connection: subscribe there. ``on_subscribed``
        gets the filters each SUBACK granted. With ``manual_ack``, received QoS 1/2
        messages are acknowledged only by :meth:`ack`; ``buffered_reads`` reads the
        socket in large chunks (for a client that receives a lot). Every hook runs on
        paho's network thread: keep them short.
        """
        self.settings = settings
        self._stopping = False
        self._connected = threading.Event()
        self._disconnected = threading.Event()
        self._outcome = threading.Event()  # set by every connection attempt's end
        self._failure: str | None = None
        self._session_present = False
        self._on_connect_hook = on_connect
        self._on_publish_hook = on_publish
        self._answers = BrokerAnswers(settings, on_refused, on_subscribed)
        self.backoff = Backoff(
            settings.reconnect_min_s,
            max(settings.reconnect_min_s, settings.reconnect_max_s),
            settings.reconnect_jitter,
        )
        self._client, self._connect = make_client(
            settings, will=will, manual_ack=manual_ack, buffered_reads=buffered_reads
        )
        # 0 = unlimited: our own outbox/backpressure bounds what is in flight, not paho.
        self._client.max_inflight_messages_set(0)
        self._client.max_queued_messages_set(0)
        self._arm_backoff()
        self.backoff.reset()
        self._wire(on_message)

    def _wire(self, on_message: MessageHandler | None) -> None:
        """Hand paho the link's callbacks."""
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_connect_fail = lambda _c, _u: self._handle_connect_fail()
        if on_message is not None:
            self._client.on_message = lambda _c, _u, msg: on_message(msg)
        self._client.on_publish = self._handle_puback
        self._client.on_subscribe = self._handle_suback
        self._client.on_unsubscribe = lambda _c, _u, mid, reasons, _p: self._answers.unsuback(
            mid, reasons
        )

    def _handle_connect_fail(self) -> None:
        # paho passes no exception: the TCP connect or the TLS handshake failed (paho
        # logs which; a certificate the CA did not sign ends here).
        self._failed("no connection or no TLS handshake")
        delay = self._arm_backoff()
        log.warning("cannot reach the broker at %s; retrying in %.1f s", self.settings.url, delay)

    def _arm_backoff(self) -> float:
        # paho waits for its min delay (a None current delay starts there): set both.
        delay = self.backoff.next()
        # paho annotates the delays as int; it only does arithmetic on them (float is fine).
        self._client.reconnect_delay_set(min_delay=delay, max_delay=delay)  # type: ignore[arg-type]  # float delay
        return delay

    # paho callbacks run on paho's network thread: keep them short and non-blocking.
    def _handle_puback(
        self, client: mqtt.Client, _u: object, mid: int, reason: ReasonCode, _p: object
    ) -> None:
        self._answers.puback(client, mid, reason)
        if self._on_publish_hook is not None:
            self._on_publish_hook(mid)

    def _handle_suback(
        self, _c: mqtt.Client, _u: object, mid: int, reasons: list[ReasonCode], _p: object
    ) -> None:
        self._answers.suback(mid, reasons)

    def _handle_connect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _props: object,
    ) -> None:
        if reason.is_failure:
            log.warning("broker %s refused the connection: %s", self.settings.url, reason)
            self._failed(f"the broker refused the connection: {reason}")
            return
        self.backoff.reset()
        self._failure = None
        self._session_present = bool(flags.session_present)
        self._connected.set()
        self._outcome.set()
        if self._on_connect_hook is not None:
            self._on_connect_hook(self)

    def _handle_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _props: object,
    ) -> None:
        if not self._connected.is_set() and self._failure is None:
            # Closed before any CONNACK: a TLS listener refusing a plain client or one
            # without a client certificate ends here.
            self._failed(f"the connection closed before the broker accepted it: {reason}")
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._disconnected.set()
        delay = self._arm_backoff()
        # A link lost while up is worth a warning: on a persistent session the broker
        # resends everything not yet acknowledged (DUP), which a user should see.
        level = logging.WARNING if was_connected and not self._stopping else logging.INFO
        log.log(
            level,
            "disconnected from %s: %s; reconnecting in %.1f s",
            self.settings.url,
            reason,
            delay,
        )

    def _failed(self, why: str) -> None:
        self._failure = why
        self._outcome.set()

    @property
    def last_failure(self) -> str | None:
        """Why the last connection attempt failed (None once connected)."""
        return self._failure

    @property
    def refused(self) -> int:
        """Publishes and subscriptions the broker refused (MQTT 5 reason codes)."""
        return self._answers.refused

    @property
    def client(self) -> mqtt.Client:
        """The underlying paho client (for subscriptions and advanced use)."""
        return self._client

    @property
    def session_present(self) -> bool:
        """Whether the broker resumed a session at the last connection (CONNACK flag)."""
        return self._session_present

    @property
    def connected(self) -> bool:
        """Whether the link is connected right now."""
        return self._connected.is_set()

    def wait_acknowledged(self, ticket: PublishTicket, timeout: float) -> bool:
        """Wait for ``ticket``'s acknowledgement, counting only the time connected.

        A broker that is away holds the caller (backpressure: the message is queued and
        sent on reconnect) instead of failing it; ``timeout`` bounds how long a
        connected broker may take. Returns whether the acknowledgement came.
        """
        waited, announced = 0.0, time.monotonic()
        while True:
            step = min(1.0, max(0.0, timeout - waited))
            started = time.monotonic()
            if ticket.wait(step):
                return True
            if self.connected:
                waited += time.monotonic() - started
                if waited >= timeout:
                    return False
            elif time.monotonic() - announced >= 30.0:
                announced = time.monotonic()
                log.warning(
                    "waiting for the broker at %s to come back: a publish (mid %d) is queued",
                    self.settings.url,
                    ticket.mid,
                )

    def start(self, *, wait_s: float | None = 10.0, fail_fast: bool = False) -> None:
        """Connect in the background; with ``wait_s``, wait for the first connection.

        Without ``fail_fast`` a refused or failed attempt is retried (with backoff) until
        ``wait_s`` passes: a broker that starts later is waited for. With it the first
        failure raises :class:`BrokerError` saying why (wrong password, TLS refused), as
        a command run by a person should.
        """
        self._failure = None
        try:
            self._client.connect_async(
                self.settings.host,
                self.settings.port,
                keepalive=self.settings.keepalive_s,
                clean_start=self._connect.clean_start,
                properties=self._connect.properties,
            )
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot connect to {self.settings.url}: {exc}") from exc
        self._client.loop_start()
        if wait_s is None:
            return
        deadline = time.monotonic() + wait_s
        while True:
            self._outcome.clear()  # cleared before looking: a later outcome wakes the wait
            if self._connected.is_set():
                return
            failure = self._failure
            if fail_fast and failure is not None:
                self.stop()
                raise BrokerError(f"cannot connect to {self.settings.url}: {failure}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise BrokerError(
                    f"no connection to the MQTT broker at {self.settings.url} after"
                    f" {wait_s:.0f} s; is it running, and are the host, port and credentials"
                    f" right?{f' (last attempt: {failure})' if failure else ''}"
                )
            self._outcome.wait(remaining)

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a connection; return whether there is one."""
        return self._connected.wait(timeout)

    def subscribe(self, topic_filter: str | Sequence[str], qos: int = 1) -> None:
        """Subscribe (call from ``on_connect`` so that it is renewed on reconnect).

        Several filters go in one SUBSCRIBE (one SUBACK). A refusal arrives later, in
        the SUBACK: it is logged and counted; the granted filters go to
        ``on_subscribed``.
        """
        filters = [topic_filter] if isinstance(topic_filter, str) else list(topic_filter)
        try:
            result = self._answers.subscribe(self._client, filters, qos)
        except ValueError as exc:  # an invalid filter or QoS
            raise BrokerError(f"cannot subscribe to {filters}: {exc}") from exc
        if result != _OK and result != _NO_CONN:
            raise BrokerError(f"cannot subscribe to {filters}: {mqtt.error_string(result)}")

    def unsubscribe(self, topic_filter: str | Sequence[str], *, timeout: float = 10.0) -> None:
        """Unsubscribe and wait up to ``timeout`` seconds for the broker's UNSUBACK.

        It blocks: never call it from a hook (they run on paho's thread, which reads the
        UNSUBACK). Raises :class:`BrokerError` when the link is down, the UNSUBACK does
        not come in time, or the broker refuses a filter (MQTT 5; "No subscription
        existed", 0x11, is not a refusal).
        """
        filters = [topic_filter] if isinstance(topic_filter, str) else list(topic_filter)
        try:
            result, waiter = self._answers.unsubscribe(self._client, filters)
        except ValueError as exc:  # an invalid filter
            raise BrokerError(f"cannot unsubscribe from {filters}: {exc}") from exc
        if result != _OK:
            raise BrokerError(f"cannot unsubscribe from {filters}: {mqtt.error_string(result)}")
        if not waiter.answered.wait(timeout):
            raise BrokerError(
                f"no UNSUBACK from the broker at {self.settings.url} within {timeout:g} s"
            )
        refused = waiter.refusals()
        if refused:
            raise BrokerError(f"the broker refused to unsubscribe {'; '.join(refused)}")

    def ack(self, mids: Iterable[int], qos: int = 1) -> None:
        """Acknowledge received messages by id (a ``manual_ack`` link), in order.

        While the link is down the acknowledgements are dropped: the broker sends those
        messages again on the persistent session. Raises :class:`BrokerError` for any
        other failure.
        """
        ack = self._client.ack
        for mid in mids:
            result = ack(mid, qos)
            if result is not _OK and result is not _NO_CONN:
                raise BrokerError(
                    f"cannot acknowledge message {mid} to {self.settings.url}:"
                    f" {mqtt.error_string(result)}"
                )

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> PublishTicket:
        """Queue ``payload`` for ``topic``; the ticket tells when the broker has it."""
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        except (ValueError, TypeError) as exc:
            raise BrokerError(f"cannot publish to {topic!r}: {exc}") from exc
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise BrokerError(f"cannot publish to {topic!r}: {mqtt.error_string(info.rc)}")
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos > 0:
            # Queued while the link is down: paho sends it when the link is back and then
            # marks it published. Its "not connected" code would make every wait fail at
            # once (the gateway's alarm sink then stopped the flow on a broker restart).
            info.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        return PublishTicket(info, topic, qos, self._answers.refusals)

    def stop(self, *, graceful_s: float = 0.0) -> None:
        """Disconnect cleanly (no last will) and stop the network thread.

        With ``graceful_s``, wait up to that long for the broker to close the connection
        after the DISCONNECT, so that the packets sent before it (the last
        acknowledgements) are read by the broker rather than lost to a TCP reset (a
        ``buffered_reads`` socket also reads out what the broker still sends).
        """
        self._stopping = True
        buffered = getattr(self._client, "buffered", None)
        if graceful_s > 0 and buffered is not None:
            buffered.drain_on_close = True
        self._disconnected.clear()
        connected = self._connected.is_set()
        self._client.disconnect()
        if connected and graceful_s > 0:
            self._disconnected.wait(graceful_s)
        self._client.loop_stop()
        self._connected.clear()

    def __enter__(self) -> MqttLink:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
