"""What a simulated device says on its status topic: birth, last will, goodbye.

The same events as the edge agent's (:mod:`edge.status`), on the same retained
``{prefix}/{site}/{device}/status`` topic: a :class:`~contract.events.DeviceOnlineEvent`
with reason ``birth`` at every connection, a :class:`~contract.events.DeviceOfflineEvent`
with reason ``connection lost`` held by the broker as the last will, and one with
reason ``shutdown`` on a clean stop. ``drivers`` is ``("simulated",)``; the birth's
``details`` say which runner the device belongs to and its MQTT client id.
"""

from __future__ import annotations

from datetime import datetime

from contract.codec import encode
from contract.events import DeviceOfflineEvent, DeviceOnlineEvent, utc_now
from edge.status import AGENT_VERSION

__all__ = ["WILL_REASON", "birth", "goodbye", "last_will"]

WILL_REASON = "connection lost"
"""The reason of the last will, as the edge agent words it."""

_DRIVERS = ("simulated",)


def birth(
    site: str, device: str, *, runner: str, client_id: str, time: datetime | None = None
) -> bytes:
    """Encode the retained ``online`` event a device publishes once connected."""
    return encode(
        DeviceOnlineEvent.create(
            site=site,
            device=device,
            time=time or utc_now(),
            agent_version=AGENT_VERSION,
            reason="birth",
            drivers=_DRIVERS,
            details={
                "event": "birth",
                "simulated": True,
                "runner": runner,
                "client_id": client_id,
            },
        )
    )


def last_will(site: str, device: str, *, time: datetime | None = None) -> bytes:
    """Encode the ``offline`` event the broker publishes if the connection dies.

    Built when the device connects, so its ``time`` is the connection time: the
    broker, not the device, decides when it is published.
    """
    return _offline(site, device, WILL_REASON, time)


def goodbye(site: str, device: str, *, time: datetime | None = None) -> bytes:
    """Encode the ``offline`` event a device publishes itself on a clean stop."""
    return _offline(site, device, "shutdown", time)


def _offline(site: str, device: str, reason: str, time: datetime | None) -> bytes:
    return encode(
        DeviceOfflineEvent.create(
            site=site,
            device=device,
            time=time or utc_now(),
            agent_version=AGENT_VERSION,
            reason=reason,
            drivers=_DRIVERS,
        )
    )
