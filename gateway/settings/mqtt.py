"""The gateway side's MQTT settings: the source, its partitions, and each role's user."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from contract.tls import TlsSettings
from edge.mqtt import MqttSettings
from gateway.settings.base import Frozen

__all__ = ["MqttIdentity", "MqttRole", "MqttSourceSettings"]


MqttRole = Literal["gateway", "operator", "dashboard"]
"""Who an MQTT client of the gateway side acts for; each has its own broker user
(docs/security.md)."""


class MqttIdentity(Frozen):
    """A broker user of one role: name, password and, for mutual TLS, its certificate."""

    username: str | None = None
    password: SecretStr | None = None
    cert_file: Path | None = None
    """Client certificate of this role (PEM), in place of ``mqtt.tls.cert_file``."""
    key_file: Path | None = None
    key_password: SecretStr | None = None

    @model_validator(mode="after")
    def _pair(self) -> MqttIdentity:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS needs both)")
        return self


class MqttSourceSettings(Frozen):
    """The gateway's MQTT connection and subscription, and the other roles' users."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    """The gateway's broker user (source and sinks)."""
    password: SecretStr | None = None
    tls: TlsSettings | None = None
    """TLS to the broker (CA, server name, the gateway's client certificate) for every
    MQTT client of this side: source, sinks, ``alarms ack``, the dashboard. None: plain
    TCP (a loopback or private-network broker only; docs/security.md)."""
    operator: MqttIdentity = MqttIdentity()
    """The operator's user (``sensorgate alarms ack``): may write commands."""
    dashboard: MqttIdentity = MqttIdentity()
    """The dashboard's user: reads alarms and summaries (writes commands only if the
    broker's ACL lets the dashboard acknowledge)."""
    client_id_prefix: str = "sg-gateway"
    share_group: str | None = "sensorgate"
    """Shared-subscription group: gateway processes in one group split the load. Empty
    (or none): plain subscriptions, for one gateway connection (one partition).
    mosquitto 2.0 does not keep shared subscriptions across its own restart: until the
    gateway subscribes again, what devices publish on a shared filter reaches no one
    and is lost (docs/hardening.md); a plain subscription of a persistent session is
    restored, and the broker queues for it."""
    partitions: int | Literal["auto"] = "auto"
    """MQTT connections (source partitions) across the whole cluster. ``"auto"`` (the
    default; ``None`` means the same): one per worker, ``processes x workers``, resolved
    when the gateway starts, so every worker of every process reads its own share of the
    shared subscription; one without a share group. Each partition is one persistent
    MQTT session (client id ``{client_id_prefix}-{share_group}-{index}``): keep the count
    stable across restarts, or drain the sessions of partitions that go away
    (docs/scaling.md)."""
    batch_max_messages: Annotated[int, Field(ge=1, le=100_000)] = 2_000
    """Most messages handed to the flow as one batch."""
    batch_max_age_ms: Annotated[int, Field(ge=0, le=10_000)] = 150
    """A batch of messages is handed to the flow when ``batch_max_messages`` are waiting
    or the oldest has waited this long (0: at once); few, larger batches amortise the
    per-batch work of the columnar steps and make few, larger writes. Below a burst's
    rates every batch waits this long: it adds to alarm latency what it saves in CPU
    (at 10,000 readings/s: 50 ms, 32 % of a core; 150 ms, 24 %; 250 ms, 17 %)."""
    receive_maximum: Annotated[int, Field(ge=1, le=65535)] = 20_000
    """Most unacknowledged messages the broker may send one partition (MQTT 5)."""
    inbox_max_bytes: Annotated[int, Field(ge=65_536)] = 16 * 1024 * 1024
    """Payload bytes a partition holds before handing them to the flow; beyond, it stops
    reading its socket (TCP backpressure), which bounds memory whatever the broker does."""
    session_expiry_s: Annotated[int, Field(ge=0)] = 7 * 86_400
    """How long the broker keeps the gateway's session (and queues) while it is away."""
    max_packet_bytes: Annotated[int, Field(ge=1024, le=268_435_455)] = 1_048_576 + 65_536
    """MQTT 5 Maximum Packet Size the gateway announces on connect: the broker never
    sends it a larger packet, so one huge message cannot make it buffer without bound.
    Must exceed ``ingest.max_payload_bytes`` (headroom for the topic and properties); set
    the broker's ``max_packet_size`` no higher, so oversize publishes are refused at
    the broker, where the publisher is told (docs/security.md, "Limits")."""

    @field_validator("partitions", mode="before")
    @classmethod
    def _auto_partitions(cls, value: object) -> object:
        if value is None or value == "auto":
            return "auto"
        try:
            count = int(value) if isinstance(value, int | str) else 0
        except ValueError:
            count = 0
        if isinstance(value, bool) or not 1 <= count <= 256 or str(count) != str(value):
            raise ValueError('expected "auto" or a whole number from 1 to 256')
        return count

    def partition_count(self, processes: int = 1, workers: int = 1) -> int:
        """Return the number of partitions for a cluster of ``processes`` x ``workers``."""
        if self.partitions == "auto":
            # Without a share group every partition would receive every message.
            return 1 if self.share_group is None else max(1, processes) * max(1, workers)
        return self.partitions

    def for_cluster(self, processes: int = 1, workers: int = 1) -> MqttSourceSettings:
        """Return these settings with ``partitions`` resolved for the cluster's size."""
        return self.model_copy(update={"partitions": self.partition_count(processes, workers)})

    @field_validator("share_group", mode="before")
    @classmethod
    def _no_group(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _one_unshared_connection(self) -> Self:
        if self.share_group is None and self.partitions != "auto" and self.partitions > 1:
            raise ValueError(
                f"without a share group every one of the {self.partitions} partitions would"
                " receive every message; set mqtt.share_group or mqtt.partitions = 1"
            )
        return self

    @property
    def batch_max_age(self) -> timedelta:
        """``batch_max_age_ms`` as a timedelta."""
        return timedelta(milliseconds=self.batch_max_age_ms)

    def link_settings(self, client_id: str, *, role: MqttRole = "gateway") -> MqttSettings:
        """Return settings for one MQTT client (MQTT 5, TLS as configured) of ``role``.

        The gateway's clients use ``username``/``password`` and ``tls`` as set; the
        operator's and the dashboard's use their own user and, if given, their own
        client certificate (never the gateway's).
        """
        username, password, tls = self.username, self.password, self.tls
        if role != "gateway":
            who = self.operator if role == "operator" else self.dashboard
            username, password = who.username, who.password
            if tls is not None:
                tls = tls.model_copy(
                    update={
                        "cert_file": who.cert_file,
                        "key_file": who.key_file,
                        "key_password": who.key_password,
                    }
                )
        return MqttSettings(
            host=self.host,
            port=self.port,
            username=username,
            password=password,
            tls=tls,
            client_id=client_id,
            clean_session=False,
            protocol="5",
            # Sink sessions hold nothing, but an abandoned one must not live for ever.
            session_expiry_s=self.session_expiry_s,
        )

    @property
    def url(self) -> str:
        """The broker as a URL."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @model_validator(mode="after")
    def _role_certificates_need_tls(self) -> MqttSourceSettings:
        for role, who in (("operator", self.operator), ("dashboard", self.dashboard)):
            if who.cert_file is not None and self.tls is None:
                raise ValueError(
                    f"mqtt.{role}.cert_file needs mqtt.tls (the CA and server name every"
                    " client of this side uses); without it the certificate would be ignored"
                )
        return self
