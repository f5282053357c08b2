"""What an MQTT link is told, and what it reports of the broker's refusals.

:class:`MqttSettings` and :class:`Will` in, :class:`Refusal` out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from contract.tls import TlsSettings

__all__ = ["NEVER_EXPIRES", "MqttSettings", "Refusal", "Will"]

NEVER_EXPIRES = 0xFFFFFFFF
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
    session_expiry_s: Annotated[int | None, Field(ge=0, le=NEVER_EXPIRES)] = None
    """MQTT 5: how long the broker keeps a persistent session (``clean_session``
    False) while the client is away; none: for ever, as a 3.1.1 session."""
    receive_maximum: Annotated[int | None, Field(ge=1, le=65535)] = None
    """MQTT 5: most unacknowledged QoS 1/2 messages the broker may send this client at
    once (none: the protocol's 65,535). With manual acknowledgement it bounds what the
    client holds unacknowledged: backpressure."""
    max_packet_bytes: Annotated[int | None, Field(ge=1024, le=268_435_455)] = None
    """MQTT 5: the largest packet the broker may send this client (none: no limit)."""
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
