"""The broker's acknowledgement of one publish, as the publisher holds it."""

from __future__ import annotations

import paho.mqtt.client as mqtt

from contract.errors import BrokerError
from edge.mqtt.settings import Refusal

__all__ = ["PublishTicket"]


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
