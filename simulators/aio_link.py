"""One simulated device's own MQTT connection on asyncio, over aiomqtt.

This is the only module that imports :mod:`aiomqtt`, and the one place where
:class:`aiomqtt.MqttError` (and the ``OSError``/``ssl.SSLError`` it wraps) becomes the
project's :class:`~contract.errors.BrokerError`. Everything above it speaks
:class:`DeviceLink`, which follows aiomqtt's own model:

- :func:`connect_device` is an ``async with`` block around one ``aiomqtt.Client``: it
  connects on entry (CONNECT with the device's client id, credentials, TLS and last
  will) and disconnects cleanly (DISCONNECT, so no last will) on exit;
- :meth:`DeviceLink.publish` returns once the broker has the message (PUBACK at QoS 1);
- :meth:`DeviceLink.wait_lost` iterates the client's incoming messages, a bounded
  queue, which is how aiomqtt reports a lost connection to a client that only
  publishes;
- :meth:`DeviceLink.abort` kills the connection without DISCONNECT, as a power cut
  or a pulled cable would, so that the broker publishes the last will.

**Sending telemetry.** :meth:`DeviceLink.publish` is aiomqtt's publish: per call an
``asyncio.Event``, its pending-call bookkeeping, ``wait_for``, a task awaiting the
PUBACK, and in paho an ``MQTTMessage`` and an ``MQTTMessageInfo`` with a
``threading.Condition``. A fleet sends its telemetry with :meth:`DeviceLink.send`
instead: at QoS 1 the PUBLISH is encoded by :mod:`simulators.aio_packets` (the bytes
paho would send) and queued on paho's own packet queue, so it is written and counted
for the keepalive as any other packet; its PUBACK is read there too, and the sender's
callback runs on the loop, with no task, future, timer or paho message object per
event. paho decodes every PUBACK into a ``ReasonCode`` and a ``Properties`` that
nothing here reads; at MQTT 3.1.1 a PUBACK is only a packet id, so the births and
goodbyes, which still go through aiomqtt's publish, have theirs read the same way.

**Housekeeping.** aiomqtt runs paho's ``loop_misc`` (keepalive pings, and the
detection of a broker that stopped answering them) every second for every client.
That is nothing for one client and about a fifth of a core for 20,000 idle ones
(measured: ~24 µs per client per second on the 2-core bench machine). paho needs it
no more often than the keepalive requires: a ping must leave within half a
keepalive after it is due for the broker (which waits 1.5 keepalives) not to drop
the client. So :class:`_FleetClient` runs it every ``housekeeping_s`` (default a
third of the keepalive), and in a fleet from one sweep for every connection rather
than a timer each; a fleet's writes are batched too (:mod:`simulators.aio_shared`).

A connection is one ``aiomqtt.Client`` for one attempt: aiomqtt's client is reusable
in principle, but after an unexpected disconnection its connection state is not reset
(``__aexit__`` returns early), so a reconnection builds a fresh one.

Example (needs a broker)::

    async with connect_device(settings, client_id="sim-a-d1") as link:
        await link.publish("sg/v1/a/d1/telemetry", payload, qos=1)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiomqtt
import paho.mqtt.client as paho_mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contract.errors import BrokerError
from edge.mqtt import MqttSettings, TlsSettings
from simulators.aio_packets import PUBLISH_QOS1, OnSent, handle_puback, publish_packet
from simulators.aio_shared import FleetIo

__all__ = ["DeviceLink", "LinkWill", "connect_device", "housekeeping_period", "tls_context"]


INCOMING_QUEUE = 16
"""Bound of a device's incoming message queue: simulated devices subscribe to nothing
by default, and a flood must never grow memory without limit."""


@dataclass(frozen=True, slots=True)
class LinkWill:
    """The message the broker publishes if the connection dies without DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def housekeeping_period(keepalive_s: float, housekeeping_s: float | None = None) -> float:
    """Return how often a client runs paho's housekeeping (see the module docstring)."""
    if housekeeping_s is not None:
        return housekeeping_s
    return max(1.0, keepalive_s / 3)


class _FleetClient(aiomqtt.Client):
    """aiomqtt's client with its writes and housekeeping shared by a fleet.

    Without a :class:`~simulators.aio_shared.FleetIo` (``io``), housekeeping is only
    paced by the keepalive; with one, writes are batched per pass of the loop and
    housekeeping is one sweep for all (see :mod:`simulators.aio_shared`). It
    overrides four of aiomqtt's private methods (the paho callbacks
    ``_on_socket_register_write``, ``_on_socket_unregister_write`` and
    ``_on_publish``, and ``_misc_loop``) and reads ``_client`` and ``_disconnected``;
    of paho's client it replaces ``_handle_pubackcomp`` (``aio_packets.handle_puback``), calls
    ``_packet_queue``, ``_mid_generate`` and ``_raise_for_invalid_topic`` and reads
    ``_sock``, ``_protocol`` and ``_in_packet``.
    ``tests/simulators/test_sim_fleet_connections.py`` pins them, so an aiomqtt or
    paho upgrade that changes them fails a test rather than a fleet.
    """

    housekeeping_s = 1.0
    io: FleetIo | None = None
    _writer_on = False
    _topic: tuple[str, bytes] = ("", b"")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        paho = self._client
        sent: dict[int, OnSent] = {}
        self._sent = sent
        paho._handle_pubackcomp = lambda cmd: handle_puback(paho, cmd, sent)  # type: ignore[method-assign]

    def send(self, topic: str, payload: bytes, qos: int, on_sent: OnSent) -> int | None:
        """Queue a PUBLISH in paho; return its packet id, or None if paho refused it.

        ``on_sent`` is called with the id when the broker has it (PUBACK at QoS 1,
        written at QoS 0), from the loop's read or write callback. At QoS 1 and MQTT
        3.1.1 the packet is encoded here and queued with paho's ``_packet_queue``
        (see :func:`~simulators.aio_packets.publish_packet`); otherwise paho's ``publish`` does it.
        """
        paho = self._client
        if qos != 1 or paho._protocol == paho_mqtt.MQTTv5:
            info = paho.publish(topic, payload, qos)
            if info.rc != paho_mqtt.MQTT_ERR_SUCCESS:
                return None
            self._sent[info.mid] = on_sent
            return info.mid
        if paho._sock is None:
            return None  # as paho's publish: not connected
        cached_topic, head = self._topic
        if topic != cached_topic:  # a device publishes its telemetry on one topic
            encoded = topic.encode()
            paho_mqtt.Client._raise_for_invalid_topic(encoded)
            head = len(encoded).to_bytes(2, "big") + encoded
            self._topic = (topic, head)
        mid = paho._mid_generate()
        self._sent[mid] = on_sent
        paho._packet_queue(PUBLISH_QOS1, publish_packet(head, mid, payload), mid, 1)
        return mid

    def _on_publish(
        self,
        client: paho_mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        on_sent = self._sent.pop(mid, None)
        if on_sent is not None:  # sent by paho's publish (QoS 0)
            on_sent(mid)
            return
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def _misc_loop(self) -> None:
        if self.io is not None:
            await self.io.keep(self)
            return
        # aiomqtt's own loop, with the period as the only change.
        while self._client.loop_misc() == paho_mqtt.MQTT_ERR_SUCCESS:
            await asyncio.sleep(self.housekeeping_s)

    def housekeep(self) -> bool:
        """Run paho's ``loop_misc`` once; return whether the connection is still up."""
        return bool(self._client.loop_misc() == paho_mqtt.MQTT_ERR_SUCCESS)

    def _on_socket_register_write(self, client: paho_mqtt.Client, userdata: Any, sock: Any) -> None:
        io = self.io
        if io is None or not io.on_loop():
            self._writer_on = True
            super()._on_socket_register_write(client, userdata, sock)
            return
        io.want_write(self)

    def _on_socket_unregister_write(
        self, client: paho_mqtt.Client, userdata: Any, sock: Any
    ) -> None:
        if self._writer_on:  # no writer was added for a batched write
            self._writer_on = False
            super()._on_socket_unregister_write(client, userdata, sock)

    def write_pending(self) -> None:
        """Write what paho queued; leave the rest to a writer if the socket is full."""
        client = self._client
        try:
            client.loop_write()
        except Exception as exc:  # as aiomqtt's own writer callback: the connection broke
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)
            return
        if client.want_write() and not self._writer_on:
            sock = client.socket()
            if sock is not None:
                self._writer_on = True
                super()._on_socket_register_write(client, None, sock)


def tls_context(tls: TlsSettings) -> ssl.SSLContext:
    """Build one TLS context for every device of a fleet (reads the files: call it once).

    Sharing one context saves reading the CA and client certificate per connection.
    """
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise BrokerError(f"cannot set up TLS from {tls.model_dump_json()}: {exc}") from exc
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class DeviceLink:
    """A connected device: publish, wait for the connection to drop, or kill it."""

    __slots__ = ("_client", "client_id", "url")

    def __init__(self, client: _FleetClient, *, client_id: str, url: str) -> None:
        self._client = client
        self.client_id = client_id
        self.url = url

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout_s: float | None = None,
    ) -> None:
        """Publish and return once the broker has it (PUBACK at QoS 1, written at QoS 0)."""
        try:
            await self._client.publish(topic, payload, qos=qos, retain=retain, timeout=timeout_s)
        except aiomqtt.MqttError as exc:
            raise BrokerError(
                f"{self.client_id}: cannot publish to {topic!r} on {self.url}: {exc}"
            ) from exc

    def send(self, topic: str, payload: bytes, qos: int, on_sent: OnSent) -> int | None:
        """Publish without waiting: return the packet id, or None if the connection is gone.

        ``on_sent(packet_id)`` is called on the loop once the broker has the message
        (PUBACK at QoS 1, written at QoS 0); never if the connection is lost first.
        No timeout: a connection that stops answering is found by the keepalive, and
        :meth:`wait_lost` then raises.
        """
        return self._client.send(topic, payload, qos, on_sent)

    async def wait_lost(self) -> None:
        """Return never; raise :class:`BrokerError` once the connection is lost."""
        try:
            async for _message in self._client.messages:
                pass  # nothing is subscribed: the iteration is the disconnection signal
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"{self.client_id}: connection to {self.url} lost: {exc}") from exc
        raise BrokerError(f"{self.client_id}: connection to {self.url} ended")

    def abort(self) -> None:
        """Close the connection at once, without DISCONNECT: the broker publishes the will.

        aiomqtt has no abrupt close, so this reaches the socket of the paho client it
        wraps (paho's public ``socket()``). Shutting the socket down, rather than
        closing it, leaves the descriptor to paho, which sees the end of the stream,
        unregisters it from the event loop and closes it as after any lost connection.
        """
        _shutdown(self._client)


def _shutdown(client: aiomqtt.Client) -> None:
    sock = client._client.socket()  # private: aiomqtt keeps its paho client there
    if isinstance(sock, socket.socket):  # TLS sockets too; a websocket has no shutdown
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _client(
    settings: MqttSettings,
    client_id: str,
    username: str | None,
    will: LinkWill | None,
    tls: ssl.SSLContext | None,
    timeout_s: float,
    bind_address: str | None,
) -> _FleetClient:
    """Return the aiomqtt client of one connection attempt (see :func:`connect_device`)."""
    password = settings.password.get_secret_value() if settings.password is not None else None
    return _FleetClient(
        settings.host,
        settings.port,
        identifier=client_id,
        username=username if username is not None else settings.username,
        password=password,
        will=None
        if will is None
        else aiomqtt.Will(will.topic, will.payload, qos=will.qos, retain=will.retain),
        # A simulated device keeps no session: a restarted simulator is a fresh run.
        clean_session=True,
        keepalive=settings.keepalive_s,
        timeout=timeout_s,
        tls_context=tls,
        tls_insecure=True if tls is not None and not tls.check_hostname else None,
        max_queued_incoming_messages=INCOMING_QUEUE,
        bind_address=bind_address or "",
    )


@contextlib.asynccontextmanager
async def connect_device(
    settings: MqttSettings,
    *,
    client_id: str,
    username: str | None = None,
    will: LinkWill | None = None,
    tls: ssl.SSLContext | None = None,
    timeout_s: float = 10.0,
    housekeeping_s: float | None = None,
    bind_address: str | None = None,
    io: FleetIo | None = None,
) -> AsyncIterator[DeviceLink]:
    """Connect one device; yield its :class:`DeviceLink`; disconnect cleanly on exit.

    ``username`` overrides ``settings.username`` (devices often log in as
    themselves); the password is ``settings.password``. ``tls`` is a context from
    :func:`tls_context`, required when ``settings.tls`` is set. ``housekeeping_s``
    paces keepalive checks (default: see :func:`housekeeping_period`);
    ``bind_address`` is the local address to connect from; ``io`` shares writes and
    housekeeping with the other connections of a fleet. Raises
    :class:`BrokerError` if the broker cannot be reached or refuses the device.
    """
    if settings.tls is not None and tls is None:
        raise BrokerError(f"{client_id}: {settings.url} needs a TLS context (tls_context())")
    client = _client(settings, client_id, username, will, tls, timeout_s, bind_address)
    client.housekeeping_s = housekeeping_period(settings.keepalive_s, housekeeping_s)
    client.io = io
    entered = False
    try:
        async with client:
            entered = True
            yield DeviceLink(client, client_id=client_id, url=settings.url)
    except BaseException as exc:
        if not entered:
            # aiomqtt leaves the socket open when the CONNACK does not come in time;
            # it would linger half-connected and be taken over by the next attempt.
            _shutdown(client)
        if isinstance(exc, aiomqtt.MqttError):
            raise BrokerError(f"{client_id}: MQTT broker at {settings.url}: {exc}") from exc
        raise
    finally:
        # A PUBACK read after this (a socket being torn down) must not reach a device
        # that has moved on to its next connection, where packet ids start again.
        client._sent.clear()
        _retrieve_disconnection(client)


def _retrieve_disconnection(client: aiomqtt.Client) -> None:
    """Mark the client's failed disconnection future as seen.

    aiomqtt sets ``_disconnected`` to the error when a connection breaks, and only its
    message iterator or ``__aexit__`` (when not yet done) ever read it. A device that
    leaves while its connection breaks (closing, killed, a goodbye that fails) reads
    neither, and asyncio logs "Future exception was never retrieved" with a traceback
    for each one when the future is collected: ~11,500 of them at the end of a
    20,000-device run. The session's outcome is already known here.
    """
    future = client._disconnected  # private: pinned by test_sim_fleet_connections
    if future.done() and not future.cancelled():
        future.exception()
