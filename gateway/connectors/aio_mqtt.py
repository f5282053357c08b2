"""The gateway's asyncio MQTT client, over aiomqtt: the one gateway module that imports it.

Everything aiomqtt (and the paho, ``OSError`` and ``ssl.SSLError`` underneath) can
raise becomes :class:`~contract.errors.BrokerError` here, never further in::

    BrokerError
    ├── could not connect: refused, unreachable, TLS, bad credentials (CONNACK code)
    ├── the broker refused a subscription (MQTT 5 SUBACK reason code, e.g. not authorised)
    ├── a publish was not acknowledged in time, or the link was down
    ├── the broker refused a publish (MQTT 5 PUBACK reason code, e.g. 0x87 not authorised)
    └── the connection was lost while reading messages

It follows aiomqtt's own model: :func:`connect` is an ``async with`` block around one
``aiomqtt.Client`` (MQTT 5, so a broker's refusal comes back with a reason code
instead of silence), messages are read from its bounded queue with
:meth:`AioLink.messages`, and a connection is one client for one attempt (a
reconnection builds a fresh one; the caller owns the backoff).

Example (needs a broker)::

    async with connect(settings, client_id="sg-alerts-1") as link:
        await link.subscribe("sg/v1/+/+/alarms")
        async for message in link.messages():
            print(message.topic, message.payload)
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from contract.errors import BrokerError, ConfigError
from edge.mqtt import MqttSettings

__all__ = ["AioLink", "Incoming", "Messages", "connect"]

INCOMING_QUEUE = 1_024
"""Default bound of the incoming message queue: beyond it aiomqtt discards (and logs),
so a flood of messages cannot grow memory without limit."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message from the broker."""

    topic: str
    payload: bytes
    retain: bool
    """Set on messages the broker kept and sends because we just subscribed."""


class AioLink:
    """One connected client; made by :func:`connect`."""

    def __init__(self, client: aiomqtt.Client, url: str) -> None:
        self._client = client
        self._url = url
        # aiomqtt waits for a PUBACK but drops its MQTT 5 reason code, so a publish the
        # broker refuses (its ACL) would pass as delivered. QoS 1 publishes go out here
        # on the paho client aiomqtt drives (its ``_client``; aiomqtt is pinned < 3),
        # and the PUBACK callback, which runs on this loop, hands over the reason code.
        self._paho: paho.Client = client._client
        # The PUBACK's reason: a ReasonCode (MQTT 5), or paho's placeholder otherwise.
        self._acks: dict[int, asyncio.Future[object]] = {}
        # aiomqtt's own callback (paho API version 2), called on after ours.
        inner: Callable[..., object] | None = self._paho.on_publish

        def on_publish(
            c: paho.Client, u: object, mid: int, reason: ReasonCode, props: Properties
        ) -> None:
            ack = self._acks.pop(mid, None)
            if ack is not None and not ack.done():
                ack.set_result(reason)
            if inner is not None:
                inner(c, u, mid, reason, props)

        self._paho.on_publish = on_publish

    async def subscribe(self, *filters: str, qos: int = 1, timeout_s: float = 10.0) -> None:
        """Subscribe to ``filters``; raise :class:`BrokerError` if the broker refuses one."""
        for topic_filter in filters:
            try:
                codes = await self._client.subscribe(
                    (topic_filter, SubscribeOptions(qos=qos)), timeout=timeout_s
                )
            except aiomqtt.MqttError as exc:
                raise BrokerError(
                    f"cannot subscribe to {topic_filter!r} at {self._url}: {exc}"
                ) from None
            for code in codes:
                value = getattr(code, "value", code)
                if isinstance(value, int) and value >= 0x80:
                    raise BrokerError(
                        f"the broker at {self._url} refused the subscription to"
                        f" {topic_filter!r}: {code}"
                    )

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout_s: float = 10.0,
    ) -> None:
        """Publish one message; at QoS 1, return once the broker acknowledged it.

        Raises :class:`BrokerError` when the link is down, no PUBACK comes within
        ``timeout_s``, or the broker refuses the publish (its reason code, e.g. "Not
        authorized", in the message).
        """
        if qos == 0:
            try:
                await self._client.publish(topic, payload, qos=0, retain=retain)
            except aiomqtt.MqttError as exc:
                raise BrokerError(f"cannot publish on {topic!r} at {self._url}: {exc}") from None
            return
        info = self._paho.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise BrokerError(
                f"cannot publish on {topic!r} at {self._url}: {paho.error_string(info.rc)}"
            )
        ack = asyncio.get_running_loop().create_future()
        self._acks[info.mid] = ack
        try:
            async with asyncio.timeout(timeout_s):
                reason = await ack
        except TimeoutError:
            raise BrokerError(
                f"the broker at {self._url} did not acknowledge the publish on {topic!r}"
                f" within {timeout_s:g} s"
            ) from None
        finally:
            self._acks.pop(info.mid, None)
        if isinstance(reason, ReasonCode) and reason.is_failure:
            raise BrokerError(
                f"the broker at {self._url} refused the publish to {topic!r}: {reason}"
                f" (0x{int(reason.value):02x})"
            )

    def messages(self) -> Messages:
        """Return the incoming messages, as they arrive (see :class:`Messages`)."""
        return Messages(self._client, self._url)


class Messages:
    """Iterates the client's bounded queue; :class:`BrokerError` when the link is lost.

    A plain iterator, not a generator: a wait for the next message may be cancelled
    (``asyncio.timeout``) and iteration goes on, where a cancelled async generator
    would be closed for good.
    """

    def __init__(self, client: aiomqtt.Client, url: str) -> None:
        self._messages = client.messages
        self._url = url

    def __aiter__(self) -> Messages:
        return self

    async def __anext__(self) -> Incoming:
        try:
            message = await self._messages.__anext__()
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"lost the connection to {self._url}: {exc}") from None
        payload = message.payload
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        elif not isinstance(payload, bytes | bytearray):
            payload = b"" if payload is None else str(payload).encode("utf-8")
        return Incoming(message.topic.value, bytes(payload), bool(message.retain))


async def _tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    tls = settings.tls
    if tls is None:
        return None
    # The project's one TLS setup (CA, client certificate and encrypted key, server
    # name, TLS 1.2 at least), made in a thread: it reads files.
    try:
        return await asyncio.to_thread(tls.ssl_context)
    except ConfigError as exc:
        raise BrokerError(f"cannot set up TLS for {settings.url}: {exc}") from None
    except (ssl.SSLError, ValueError) as exc:
        raise BrokerError(f"cannot set up TLS for {settings.url}: {exc}") from None


@contextlib.asynccontextmanager
async def connect(
    settings: MqttSettings,
    *,
    client_id: str,
    queue_size: int = INCOMING_QUEUE,
    timeout_s: float = 10.0,
) -> AsyncIterator[AioLink]:
    """Connect (MQTT 5, clean start, no session kept) and yield the link; disconnect on exit.

    Raises :class:`BrokerError` when the broker cannot be reached or refuses us.
    """
    password = settings.password.get_secret_value() if settings.password else None
    tls = settings.tls
    tls_context = await _tls_context(settings)
    # paho's Properties.__init__ carries no annotations.
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # see above
    properties.SessionExpiryInterval = 0
    try:
        client = aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=password,
            identifier=client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            keepalive=settings.keepalive_s,
            timeout=timeout_s,
            max_queued_incoming_messages=queue_size,
            properties=properties,
            tls_context=tls_context,
            tls_insecure=True if tls is not None and tls.insecure_skip_verify else None,
        )
        async with client:
            yield AioLink(client, settings.url)
    except aiomqtt.MqttError as exc:
        raise BrokerError(f"MQTT broker at {settings.url}: {exc}") from None
