"""A small MQTT link over paho-mqtt v2 for publishers (edge agents and simulators).

:class:`MqttLink` owns one paho client: it connects in the background, reconnects
with capped exponential backoff and jitter, and publishes with QoS 1 by default.
Paho errors are translated into :class:`~contract.errors.BrokerError` here and
nowhere else.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from contract.errors import BrokerError

__all__ = ["Backoff", "MqttLink", "MqttSettings", "PublishTicket", "TlsSettings", "Will"]

log = logging.getLogger(__name__)


class TlsSettings(BaseModel):
    """TLS to the broker: a CA file, and a client certificate for mutual TLS."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False


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
    reconnect_min_s: Annotated[float, Field(gt=0)] = 0.5
    reconnect_max_s: Annotated[float, Field(gt=0)] = 60.0
    reconnect_jitter: Annotated[float, Field(ge=0, le=1)] = 0.5

    @property
    def url(self) -> str:
        """The broker as a URL, for logs and messages."""
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Will:
    """A last-will message the broker publishes if the link dies."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class PublishTicket:
    """The broker's acknowledgement of one publish (PUBACK for QoS 1)."""

    __slots__ = ("_info",)

    def __init__(self, info: mqtt.MQTTMessageInfo) -> None:
        self._info = info

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
        """Wait up to ``timeout`` seconds for the acknowledgement; return whether it came."""
        try:
            self._info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return self._info.is_published()


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
    ) -> None:
        self.settings = settings
        self._connected = threading.Event()
        self._on_connect_hook = on_connect
        self.backoff = Backoff(
            settings.reconnect_min_s,
            max(settings.reconnect_min_s, settings.reconnect_max_s),
            settings.reconnect_jitter,
        )
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=settings.clean_session if settings.client_id else True,
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
        if on_publish is not None:
            self._client.on_publish = lambda _c, _u, mid, _rc, _p: on_publish(mid)

    def _handle_connect_fail(self) -> None:
        delay = self._arm_backoff()
        log.warning("cannot reach the broker at %s; retrying in %.1f s", self.settings.url, delay)

    def _arm_backoff(self) -> float:
        # paho waits for its min delay (a None current delay starts there): set both.
        delay = self.backoff.next()
        self._client.reconnect_delay_set(min_delay=delay, max_delay=delay)  # type: ignore[arg-type]
        return delay

    def _configure_tls(self, tls: TlsSettings) -> None:
        try:
            self._client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_NONE if tls.insecure_skip_verify else ssl.CERT_REQUIRED,
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise BrokerError(f"cannot set up TLS for {self.settings.url}: {exc}") from exc
        if tls.insecure_skip_verify:
            self._client.tls_insecure_set(True)

    # paho callbacks run on paho's network thread: keep them short and non-blocking.
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
            return
        self.backoff.reset()
        self._connected.set()
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
        self._connected.clear()
        delay = self._arm_backoff()
        log.info(
            "disconnected from %s: %s; reconnecting in %.1f s", self.settings.url, reason, delay
        )

    @property
    def client(self) -> mqtt.Client:
        """The underlying paho client (for subscriptions and advanced use)."""
        return self._client

    @property
    def connected(self) -> bool:
        """Whether the link is connected right now."""
        return self._connected.is_set()

    def start(self, *, wait_s: float | None = 10.0) -> None:
        """Connect in the background; with ``wait_s``, wait for the first connection."""
        try:
            self._client.connect_async(
                self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s
            )
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot connect to {self.settings.url}: {exc}") from exc
        self._client.loop_start()
        if wait_s is not None and not self._connected.wait(wait_s):
            self.stop()
            raise BrokerError(
                f"no connection to the MQTT broker at {self.settings.url} after {wait_s:.0f} s;"
                " is it running, and are the host, port and credentials right?"
            )

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a connection; return whether there is one."""
        return self._connected.wait(timeout)

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe (call from ``on_connect`` so that it is renewed on reconnect)."""
        result, _mid = self._client.subscribe(topic_filter, qos=qos)
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
        return PublishTicket(info)

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
