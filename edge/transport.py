"""The narrow seam between the publisher and MQTT, and an in-memory fake of it.

:class:`~edge.mqtt.MqttLink` is the real transport. :class:`FakeTransport` lets unit
tests drive connection loss and PUBACKs by hand.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["FakeTicket", "FakeTransport", "Ticket", "Transport"]


class Ticket(Protocol):
    """The broker's acknowledgement of one publish."""

    def is_acknowledged(self) -> bool:
        """Whether the PUBACK arrived."""
        ...

    @property
    def refused(self) -> bool:
        """Whether the PUBACK was a refusal (MQTT 5 reason code 0x80 or more)."""
        ...


class Transport(Protocol):
    """What the publisher needs from an MQTT connection."""

    @property
    def connected(self) -> bool:
        """Whether the connection is up right now."""
        ...

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> Ticket:
        """Queue a message; the ticket tells when the broker has it."""
        ...


@dataclass
class FakeTicket:
    """A ticket acknowledged by :meth:`FakeTransport.ack`."""

    mid: int
    acked: bool = False
    refused: bool = False
    """Set with :meth:`FakeTransport.refuse`: the fake broker's ACL said no."""

    def is_acknowledged(self) -> bool:
        """Whether the fake broker acknowledged it."""
        return self.acked


@dataclass
class FakeTransport:
    """Records publishes; acknowledges them at once (``auto_ack``) or when told."""

    auto_ack: bool = True
    is_connected: bool = True
    on_ack: Callable[[int], None] | None = None
    sent: list[tuple[str, bytes, bool]] = field(default_factory=list)
    tickets: list[FakeTicket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def connected(self) -> bool:
        """Whether the fake link is up."""
        return self.is_connected

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> FakeTicket:
        """Record the message; acknowledge it if connected and ``auto_ack``."""
        with self._lock:
            ticket = FakeTicket(len(self.tickets) + 1)
            self.tickets.append(ticket)
            self.sent.append((topic, payload, retain))
        if self.auto_ack and self.is_connected:
            self._ack(ticket)
        return ticket

    def _ack(self, ticket: FakeTicket) -> None:
        ticket.acked = True
        if self.on_ack is not None:
            self.on_ack(ticket.mid)

    def refuse(self, ticket: FakeTicket) -> None:
        """Acknowledge ``ticket`` with a refusal (as an MQTT 5 broker's ACL does)."""
        ticket.refused = True
        self._ack(ticket)

    def ack_all(self) -> None:
        """Acknowledge everything published so far."""
        with self._lock:
            pending = [t for t in self.tickets if not t.acked]
        for ticket in pending:
            self._ack(ticket)
