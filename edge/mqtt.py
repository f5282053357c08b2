"""A small MQTT link over paho-mqtt v2 for publishers (edge agents and simulators).

:class:`MqttLink` owns one paho client: it connects in the background, reconnects
with capped exponential backoff and jitter, and publishes with QoS 1 by default.
Paho errors are translated into :class:`~contract.errors.BrokerError` here and
nowhere else.

It speaks MQTT 5 unless told otherwise, so that a broker's refusal is visible: a
publish the ACL denies comes back as a PUBACK with a reason code of 0x80 or more
(0x87 "Not authorized"), where MQTT 3.1.1 acknowledges it as if it were delivered. Each
refusal is logged with its topic, counted in :attr:`MqttLink.refused`, handed to
``on_refused``, and kept on the publish's :class:`PublishTicket`
(:meth:`PublishTicket.raise_if_refused`); a refused subscription (SUBACK) is logged
and handed over the same way.

Paho's own backoff doubles a fixed delay with no jitter, so a fleet that lost its
broker reconnects in lock-step. :class:`Backoff` draws each delay instead, and the
link hands it to paho just before paho waits (paho calls ``on_disconnect`` or
``on_connect_fail`` right before its reconnect wait, and the wait reads the delay
set by ``reconnect_delay_set``).
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from contract.errors import BrokerError, ConfigError
from contract.tls import TlsSettings

__all__ = [
    "Backoff",
    "MqttLink",
    "MqttSettings",
    "PublishTicket",
    "Refusal",
    "TlsSettings",
    "Will",
]

log = logging.getLogger(__name__)

_NEVER_EXPIRES = 0xFFFFFFFF
"""MQTT 5 Session Expiry Interval meaning "never" (a 3.1.1 persistent session's life)."""


class MqttSettings(BaseModel):
    """Where and how to connect to the broker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    client_id: str = ""
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsSettings | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    clean_session: bool = False
    protocol: Literal["3.1.1", "5"] = "5"
    """MQTT version. 5 (the default) makes a broker's refusals visible (PUBACK and
    SUBACK reason codes); 3.1.1 only for brokers that do not speak 5."""
    session_expiry_s: Annotated[int | None, Field(ge=0, le=_NEVER_EXPIRES)] = None
    """MQTT 5: how long the broker keeps a persistent session (``clean_session``
    False) while the client is away; none: for ever, as a 3.1.1 session."""
    reconnect_min_s: Annotated[float, Field(gt=0)] = 0.5
    reconnect_max_s: Annotated[float, Field(gt=0)] = 60.0
    reconnect_jitter: Annotated[float, Field(ge=0, le=1)] = 0.5

    @property
    def url(self) -> str:
        """The broker as a URL, for logs and messages."""
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """The broker refused a publish (PUBACK) or a subscription (SUBACK)."""

    packet: Literal["puback", "suback"]
    topic: str
    """The topic published to, or the filter subscribed to."""
    code: int
    """The MQTT 5 reason code (0x80 or more; 0x87 is "Not authorized")."""
    reason: str
    """The reason code's name."""

    def __str__(self) -> str:
        what = "publish to" if self.packet == "puback" else "subscription to"
        return f"the broker refused the {what} {self.topic!r}: {self.reason} (0x{self.code:02x})"


@dataclass(frozen=True, slots=True)
class Will:
    """A last-will message the broker publishes if the link dies."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class PublishTicket:
    """The broker's acknowledgement of one publish (PUBACK for QoS 1).

    An acknowledgement may be a refusal (MQTT 5): :attr:`refusal` tells, once
    :meth:`is_acknowledged` is true.
    """

    __slots__ = ("_info", "_qos", "_refusals", "_topic")

    def __init__(
        self,
        info: mqtt.MQTTMessageInfo,
        topic: str = "",
        qos: int = 1,
        refusals: dict[int, Refusal] | None = None,
    ) -> None:
        self._info = info
        self._topic = topic
        self._qos = qos
        self._refusals = refusals

    @property
    def mid(self) -> int:
        """The MQTT message id."""
        return self._info.mid

    def is_acknowledged(self) -> bool:
        """Return whether the broker acknowledged the message (at once for QoS 0).

        A QoS 0 message published while the link is down is never sent: paho marks it
        failed, and this says False rather than raising.
        """
        try:
            return self._info.is_published()
        except (RuntimeError, ValueError):
            return False

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the acknowledgement; return whether it came.

        A refusal is an acknowledgement too: look at :attr:`refusal` afterwards.
        """
        try:
            self._info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return self._info.is_published()

    @property
    def refusal(self) -> Refusal | None:
        """The broker's refusal of this publish, if it refused it (None until acknowledged)."""
        if self._qos == 0 or self._refusals is None or not self._info.is_published():
            return None
        # Recorded by the PUBACK callback before paho marks the message published, and
        # cleared there by a successful PUBACK of a later message with the same id.
        return self._refusals.get(self._info.mid)

    @property
    def refused(self) -> bool:
        """Whether the broker acknowledged this publish with a refusal."""
        return self.refusal is not None

    def raise_if_refused(self) -> None:
        """Raise :class:`BrokerError` if the broker refused this publish."""
        refusal = self.refusal
        if refusal is not None:
            raise BrokerError(str(refusal))


MessageHandler = Callable[[mqtt.MQTTMessage], None]


class Backoff:
    """Capped exponential backoff with jitter.

    Attempt ``n`` (from 0) waits a uniform draw from ``[d * (1 - jitter), d]`` where
    ``d = min(cap, base * 2**n)``: never above the cap, never below half of it with
    the default jitter, and different for every device.
    """

    def __init__(
        self, base: float, cap: float, jitter: float = 0.5, *, rng: random.Random | None = None
    ) -> None:
        if base <= 0 or cap < base or not 0 <= jitter <= 1:
            raise ValueError("need 0 < base <= cap and 0 <= jitter <= 1")
        self.base, self.cap, self.jitter = base, cap, jitter
        self._rng = rng or random.Random()
        self.attempt = 0

    def next(self) -> float:
        """Return the delay before the next attempt and count the attempt."""
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 62)))
        self.attempt += 1
        return self._rng.uniform(ceiling * (1 - self.jitter), ceiling)

    def reset(self) -> None:
        """Start again from ``base`` (after a successful connection)."""
        self.attempt = 0


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
    ) -> None:
        self.settings = settings
        self._connected = threading.Event()
        self._outcome = threading.Event()  # set by every connection attempt's end
        self._failure: str | None = None
        self._on_connect_hook = on_connect
        self._on_publish_hook = on_publish
        self._on_refused_hook = on_refused
        self.refused = 0
        """Publishes and subscriptions the broker refused (MQTT 5 reason codes)."""
        self._refusals: dict[int, Refusal] = {}
        self._sub_lock = threading.Lock()
        self._sub_filters: dict[int, list[str]] = {}
        self.backoff = Backoff(
            settings.reconnect_min_s,
            max(settings.reconnect_min_s, settings.reconnect_max_s),
            settings.reconnect_jitter,
        )
        clean = settings.clean_session if settings.client_id else True
        # What CONNECT carries besides the address (MQTT 5 only; paho's defaults else).
        self._clean_start: bool | Literal[3] = mqtt.MQTT_CLEAN_START_FIRST_ONLY
        self._properties: Properties | None = None
        if settings.protocol == "5":
            # MQTT 5 has no clean_session: clean_start, and a session expiry to keep one.
            self._client = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=settings.client_id,
                protocol=mqtt.MQTTv5,
            )
            # paho's Properties.__init__ carries no annotations.
            self._properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # see above
            expiry = (
                _NEVER_EXPIRES if settings.session_expiry_s is None else settings.session_expiry_s
            )
            self._properties.SessionExpiryInterval = 0 if clean else expiry
            self._clean_start = clean
        else:
            self._client = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=settings.client_id,
                clean_session=clean,
                protocol=mqtt.MQTTv311,
            )
        # 0 = unlimited: our own outbox/backpressure bounds what is in flight, not paho.
        self._client.max_inflight_messages_set(0)
        self._client.max_queued_messages_set(0)
        self._arm_backoff()
        self.backoff.reset()
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else None
            self._client.username_pw_set(settings.username, password)
        if settings.tls is not None:
            self._configure_tls(settings.tls)
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_connect_fail = lambda _c, _u: self._handle_connect_fail()
        if on_message is not None:
            self._client.on_message = lambda _c, _u, msg: on_message(msg)
        self._client.on_publish = self._handle_puback
        self._client.on_subscribe = self._handle_suback

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

    def _configure_tls(self, tls: TlsSettings) -> None:
        try:
            self._client.tls_set_context(tls.ssl_context())
        except ConfigError as exc:
            raise BrokerError(f"cannot set up TLS for {self.settings.url}: {exc}") from None
        except (ssl.SSLError, ValueError) as exc:
            raise BrokerError(f"cannot set up TLS for {self.settings.url}: {exc}") from exc

    # paho callbacks run on paho's network thread: keep them short and non-blocking.
    def _handle_puback(
        self, client: mqtt.Client, _u: object, mid: int, reason: ReasonCode, _p: object
    ) -> None:
        if isinstance(reason, ReasonCode) and reason.is_failure:
            # paho calls this holding its outgoing-message lock, with the message still
            # in its table: its topic is there to name in the log.
            message = getattr(client, "_out_messages", {}).get(mid)
            topic = getattr(message, "topic", "?")
            self._refused(Refusal("puback", topic, int(reason.value), str(reason)), mid)
        else:
            self._refusals.pop(mid, None)
        if self._on_publish_hook is not None:
            self._on_publish_hook(mid)

    def _handle_suback(
        self, _c: mqtt.Client, _u: object, mid: int, reasons: list[ReasonCode], _p: object
    ) -> None:
        with self._sub_lock:
            filters = self._sub_filters.pop(mid, [])
        for i, reason in enumerate(reasons):
            if isinstance(reason, ReasonCode) and reason.is_failure:
                topic = filters[i] if i < len(filters) else "?"
                self._refused(Refusal("suback", topic, int(reason.value), str(reason)), None)

    def _refused(self, refusal: Refusal, mid: int | None) -> None:
        self.refused += 1
        if mid is not None:
            self._refusals[mid] = refusal
        log.warning("%s (client %r at %s)", refusal, self.settings.client_id, self.settings.url)
        if self._on_refused_hook is not None:
            self._on_refused_hook(refusal)

    def _handle_connect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _props: object,
    ) -> None:
        if reason.is_failure:
            log.warning("broker %s refused the connection: %s", self.settings.url, reason)
            self._failed(f"the broker refused the connection: {reason}")
            return
        self.backoff.reset()
        self._failure = None
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
        self._connected.clear()
        delay = self._arm_backoff()
        log.info(
            "disconnected from %s: %s; reconnecting in %.1f s", self.settings.url, reason, delay
        )

    def _failed(self, why: str) -> None:
        self._failure = why
        self._outcome.set()

    @property
    def last_failure(self) -> str | None:
        """Why the last connection attempt failed (None once connected)."""
        return self._failure

    @property
    def client(self) -> mqtt.Client:
        """The underlying paho client (for subscriptions and advanced use)."""
        return self._client

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
                clean_start=self._clean_start,
                properties=self._properties,
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

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe (call from ``on_connect`` so that it is renewed on reconnect).

        A refusal arrives later, in the SUBACK: it is logged and counted.
        """
        # Held across the call so that the SUBACK (on paho's thread) finds the filter.
        with self._sub_lock:
            result, mid = self._client.subscribe(topic_filter, qos=qos)
            if mid is not None:
                self._sub_filters[mid] = [topic_filter]
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS and result != MQTTErrorCode.MQTT_ERR_NO_CONN:
            raise BrokerError(f"cannot subscribe to {topic_filter!r}: {mqtt.error_string(result)}")

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
        return PublishTicket(info, topic, qos, self._refusals)

    def stop(self) -> None:
        """Disconnect cleanly (no last will) and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def __enter__(self) -> MqttLink:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
