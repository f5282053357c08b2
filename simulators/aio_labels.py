"""Ground-truth labels of an :class:`~simulators.aio_fleet.AsyncFleet`, off the hot path.

The schedule hands each label to a bounded queue; a :class:`LabelWriter` task writes
it to the label sinks from a worker thread (files are blocking I/O, never done on
the event loop) and, with a labels topic, publishes it (QoS 1) over a connection of
its own, reconnecting with backoff; a label is published again after a lost
connection until the broker acknowledges it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence

from tenacity import AsyncRetrying, retry_if_exception_type
from tenacity import wait_random_exponential as full_jitter

from contract.errors import BrokerError
from edge.mqtt import MqttSettings
from simulators.aio_link import DeviceLink, connect_device
from simulators.connections import ConnectionPlan
from simulators.labels import Label, LabelSink, label_payload

__all__ = ["LABEL_QUEUE", "LabelWriter"]

log = logging.getLogger(__name__)

LABEL_QUEUE = 10_000


class LabelWriter:
    """Writes and publishes labels queued by :meth:`add`; run :meth:`run` as a task."""

    def __init__(
        self,
        *,
        sinks: Sequence[LabelSink],
        topic: str | None,
        settings: MqttSettings,
        plan: ConnectionPlan,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.sinks = list(sinks)
        self.topic = topic
        self.settings = settings
        self.plan = plan
        self.tls = tls
        self.dropped = 0
        self.queue: asyncio.Queue[Label] = asyncio.Queue(maxsize=LABEL_QUEUE)
        self._inflight: Label | None = None

    @property
    def active(self) -> bool:
        """Whether labels go anywhere at all."""
        return bool(self.sinks) or self.topic is not None

    def add(self, label: Label) -> None:
        """Queue one label (counted as dropped if the queue is full)."""
        if not self.active:
            return
        try:
            self.queue.put_nowait(label)
        except asyncio.QueueFull:
            self.dropped += 1

    async def join(self, timeout: float) -> bool:
        """Wait until every queued label is written and published; return whether it was."""
        try:
            await asyncio.wait_for(self.queue.join(), timeout)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Write and publish labels until cancelled."""
        if not self.active:
            return
        if self.topic is None:
            await self._pump(None)
            return
        plan = self.plan
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(BrokerError),
            wait=full_jitter(multiplier=plan.backoff_min_s, max=plan.backoff_max_s),
        ):
            with attempt:
                async with connect_device(
                    self.settings,
                    client_id=plan.client_id("_sim", "labels"),
                    tls=self.tls,
                    timeout_s=plan.connect_timeout_s,
                ) as link:
                    await self._pump(link)

    async def _pump(self, link: DeviceLink | None) -> None:
        queue = self.queue
        while True:
            if self._inflight is None:
                label = await queue.get()
                if self.sinks:
                    await asyncio.to_thread(self._write, label)
                self._inflight = label
            if link is not None and self.topic is not None:
                # Raises when the connection is lost: the label goes again after it.
                await link.publish(self.topic, label_payload(self._inflight), qos=1)
            self._inflight = None
            queue.task_done()

    def _write(self, label: Label) -> None:
        for sink in self.sinks:
            sink.add(label)
