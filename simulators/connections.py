"""How a fleet with one MQTT connection per device connects: the :class:`ConnectionPlan`.

A frozen settings object for :class:`~simulators.aio_fleet.AsyncFleet`: client ids and
user names (templates over ``{site}`` and ``{device}``), the ramp-up (how fast, and
how randomly, the devices connect), reconnection backoff, each device's bounded
outgoing queue, and which slice of the fleet to kill abruptly, when, and whether it
comes back. The ramp and the choice of victims are drawn from ``seed``, so a run is
repeatable.

Example::

    >>> plan = ConnectionPlan(ramp_rate=1000, drop_fraction=0.1, drop_after_s=30)
    >>> plan.client_id("site-1", "dev-7")
    'sim-site-1-dev-7'
    >>> len(plan.victims(list(range(100))))
    10
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ConnectionPlan"]

T = TypeVar("T")


class ConnectionPlan(BaseModel):
    """Identity, ramp-up, backoff, queues and drops of a per-device fleet."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id_template: str = "sim-{site}-{device}"
    """Each device's MQTT client id."""
    username_template: str | None = None
    """Each device's MQTT user name (None: the broker settings' one, if any)."""
    ramp_rate: Annotated[float, Field(gt=0)] = 500.0
    """New connections per second during the ramp-up."""
    ramp_jitter: Annotated[float, Field(ge=0, le=1)] = 1.0
    """How far inside its slot of ``1 / ramp_rate`` s a device connects: 0 at the start
    of the slot, 1 anywhere in it (uniform). The order is shuffled either way."""
    max_connecting: Annotated[int, Field(ge=1)] = 100
    """Connection attempts in flight at once: beyond it devices wait their turn, so a
    machine slower than ``ramp_rate`` ramps up more slowly instead of timing out."""
    connect_threads: Annotated[int, Field(ge=1, le=32)] = 4
    """Threads that open connections (aiomqtt connects in the loop's executor). Few:
    each holds the GIL while paho prepares a connection, and the event loop waits for
    the GIL after every system call it makes."""
    connect_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    """Longest wait for a CONNACK (and, later, for any PUBACK)."""
    ramp_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    """How long after the last slot of the ramp the run waits for stragglers before it
    starts the schedule anyway (they keep trying and queue their readings)."""
    backoff_min_s: Annotated[float, Field(gt=0)] = 0.5
    backoff_max_s: Annotated[float, Field(gt=0)] = 30.0
    """Reconnection waits: random in ``[0, min(max, min * 2**attempt)]`` (full jitter)."""
    queue_size: Annotated[int, Field(ge=1)] = 100
    """Events a device holds while it cannot send (real-time runs drop the oldest beyond,
    and count them; unthrottled runs wait instead)."""
    drop_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Share of the devices whose connection is killed without DISCONNECT."""
    drop_after_s: Annotated[float, Field(ge=0)] = 0.0
    """Wall seconds after the schedule starts at which the drop happens."""
    rejoin_after_s: Annotated[float, Field(gt=0)] | None = None
    """Wall seconds after the drop at which the dropped devices reconnect (None: never)."""
    bind_addresses: tuple[str, ...] = ()
    """Local addresses to connect from, device ``i`` from ``bind_addresses[i % n]``
    (default: the system's choice). One address offers about half of
    ``net.ipv4.ip_local_port_range`` (~14,000) connections to one broker port before
    Linux's search for a free port slows every connect to a crawl; on loopback, give
    several ``127.0.0.x`` for more."""
    housekeeping_s: Annotated[float, Field(gt=0)] | None = None
    """How often each connection checks its keepalive (None: a third of the keepalive;
    1 is aiomqtt's own pace). See :mod:`simulators.aio_link`."""
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> ConnectionPlan:
        if self.backoff_max_s < self.backoff_min_s:
            raise ValueError(
                f"backoff_max_s ({self.backoff_max_s}) must be at least backoff_min_s"
                f" ({self.backoff_min_s})"
            )
        for name in ("client_id_template", "username_template"):
            template = getattr(self, name)
            if template is None:
                continue
            try:
                template.format(site="s", device="d")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"{name}: expected a template over {{site}} and {{device}}; got"
                    f" {template!r} ({exc!r})"
                ) from None
        return self

    def client_id(self, site: str, device: str) -> str:
        """Return the client id of one device."""
        return self.client_id_template.format(site=site, device=device)

    def username(self, site: str, device: str) -> str | None:
        """Return the user name of one device (None: the broker settings' one)."""
        if self.username_template is None:
            return None
        return self.username_template.format(site=site, device=device)

    def bind_address(self, index: int) -> str | None:
        """Return the local address device ``index`` connects from (None: any)."""
        if not self.bind_addresses:
            return None
        return self.bind_addresses[index % len(self.bind_addresses)]

    def ramp_offsets(self, count: int) -> list[float]:
        """Return each device's connection time, seconds after the start of the ramp.

        Devices are shuffled into slots of ``1 / ramp_rate`` seconds, then placed
        at random within their slot by ``ramp_jitter``.
        """
        rng = random.Random(f"{self.seed}/ramp")
        slots = list(range(count))
        rng.shuffle(slots)
        width = 1.0 / self.ramp_rate
        return [(slot + rng.random() * self.ramp_jitter) * width for slot in slots]

    def victims(self, items: Sequence[T]) -> list[T]:
        """Return the ``drop_fraction`` of ``items`` to kill, drawn from ``seed``."""
        count = round(len(items) * self.drop_fraction)
        rng = random.Random(f"{self.seed}/drop")
        return rng.sample(items, count)
