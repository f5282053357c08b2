"""The Home Assistant sink: discovery configs for the gateway's alarms, latest aggregates.

Built when ``ha_discovery.enabled``; the flow feeds it each shard's
:class:`~dataflows.shard_output.Announcement` (series first seen, windows closed). For
each batch, ``write_batch``

1. publishes, retained, the discovery configs (:mod:`dataflows.adapters.ha_publish`) of
   every device that has a new series and that this partition has not announced since
   it started (an alarm binary sensor and the active alarm count), and, with
   ``aggregates``, the sensor config of every new series;
2. with ``aggregates``, publishes the latest closed window (of ``ha_discovery.window``)
   of each series in the batch, retained, on
   ``{prefix}/{site}/{device}/aggregates/{sensor}/{metric}``: :func:`aggregate_document`;
3. waits for the PUBACKs (QoS 1, MQTT 5, a persistent session per worker).

A restarted gateway announces every series again once (the shard re-announces what it
restored; without recovery devices are new again): the same retained configs, so Home
Assistant sees no change. Home Assistant traffic is a side channel, not stored data: a
message the broker has not acknowledged within ``ack_timeout`` is logged and counted,
not raised (it stays in the session and goes again on reconnect), so a slow broker
never stops readings being stored.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from contract import TopicScheme
from contract.errors import BrokerError, SensorGateError
from dataflows.adapters.ha_publish import device_discovery, series_discovery
from dataflows.columns import AggregateColumns, SeriesNames
from dataflows.shard_output import Announcement
from dataflows.windows import parse_window
from edge.mqtt import MqttLink, MqttSettings
from gateway.observability.metrics import GatewayMetrics
from gateway.settings import HaDiscoverySettings

__all__ = [
    "AGGREGATE_TYPE",
    "HomeAssistantSink",
    "Link",
    "MemoryLink",
    "aggregate_document",
    "start_link",
]

log = logging.getLogger(__name__)

AGGREGATE_TYPE = "io.sensorgate.aggregate.v1"
"""The ``type`` of the document on ``.../aggregates/{sensor}/{metric}``."""

Message = tuple[str, bytes, str]
"""(topic, payload, kind) with kind ``config`` or ``aggregate``."""


class Ticket(Protocol):
    """The broker's acknowledgement of one publish."""

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; return whether the broker acknowledged it."""
        ...


class Link(Protocol):
    """What the sink needs of an MQTT client (:class:`~edge.mqtt.MqttLink` has it)."""

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> Ticket:
        """Queue a message; return its :class:`Ticket`."""
        ...

    def stop(self) -> None:
        """Disconnect."""
        ...


def start_link(settings: MqttSettings) -> Link:
    """Return a connected :class:`~edge.mqtt.MqttLink`."""
    link = MqttLink(settings)
    link.start()
    return link


@dataclass
class _Acked:
    acked: bool = True

    def wait(self, timeout: float) -> bool:
        return self.acked


@dataclass
class MemoryLink:
    """A :class:`Link` that keeps what is published (retained ones by topic), for tests."""

    acknowledge: bool = True
    """Whether the fake broker acknowledges."""
    published: list[tuple[str, bytes, int, bool]] = field(default_factory=list)
    retained: dict[str, bytes] = field(default_factory=dict)
    stopped: bool = False

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> _Acked:
        """Keep the message; return a ticket that says :attr:`acknowledge`."""
        self.published.append((topic, payload, qos, retain))
        if retain:
            self.retained[topic] = payload
        return _Acked(self.acknowledge)

    def stop(self) -> None:
        """Remember that the sink closed the link."""
        self.stopped = True


def _iso(t_us: int) -> str:
    moment = datetime.fromtimestamp(t_us / 1_000_000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def aggregate_document(
    names: SeriesNames, cols: AggregateColumns, row: int, length_us: int
) -> dict[str, Any]:
    """Return row ``row`` of ``cols`` as the published aggregate document.

    ``{"type": "io.sensorgate.aggregate.v1", "site", "device", "sensor", "metric",
    "window", "start", "end", "count", "mean", "min", "max", "first", "last"}``, plus
    ``"stddev"`` when the window had two readings or more; times are RFC 3339 UTC.
    """
    s = int(cols.series[row])
    start = int(cols.start_us[row])
    doc: dict[str, Any] = {
        "type": AGGREGATE_TYPE,
        "site": names.site[s],
        "device": names.device[s],
        "sensor": names.sensor[s],
        "metric": names.metric[s],
        "window": cols.window_names[int(cols.window[row])],
        "start": _iso(start),
        "end": _iso(start + length_us),
        "count": int(cols.count[row]),
        "mean": _number(cols.mean[row]),
        "min": _number(cols.min[row]),
        "max": _number(cols.max[row]),
        "first": _number(cols.first[row]),
        "last": _number(cols.last[row]),
    }
    stddev = _number(cols.stddev[row])
    if stddev is not None:
        doc["stddev"] = stddev
    return doc


class _HomeAssistantPartition(StatelessSinkPartition[Announcement]):
    def __init__(
        self,
        link: Link,
        topics: TopicScheme,
        settings: HaDiscoverySettings,
        window: str,
        ack_timeout: float,
        metrics: GatewayMetrics | None,
    ) -> None:
        self._link = link
        self._topics = topics
        self._settings = settings
        self._window = window
        self._length_us = parse_window(window).length_us
        self._ack_timeout = ack_timeout
        self._metrics = metrics
        self._devices: set[tuple[str, str]] = set()
        """Devices whose configs this partition published since it started."""

    def write_batch(self, items: list[Announcement]) -> None:
        messages: list[Message] = []
        latest: dict[tuple[int, int], tuple[SeriesNames, AggregateColumns, int]] = {}
        for item in items:
            messages.extend(self._configs(item))
            if self._settings.aggregates and item.aggregates is not None:
                self._latest(item, latest)
        for names, cols, row in latest.values():
            doc = aggregate_document(names, cols, row, self._length_us)
            try:
                topic = self._topics.aggregates(
                    doc["site"], doc["device"], doc["sensor"], doc["metric"]
                )
            except SensorGateError as exc:  # ids are checked at decode: not expected
                log.warning("no aggregates topic for %s: %s", doc, exc)
                continue
            body = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
            messages.append((topic, body, "aggregate"))
        self._publish(messages)

    def _configs(self, item: Announcement) -> list[Message]:
        out: list[Message] = []
        names = item.names
        prefix = self._settings.discovery_prefix
        for s in item.new_series:
            site, device = names.site[s], names.device[s]
            try:
                if (site, device) not in self._devices:
                    for m in device_discovery(
                        site, device, topics=self._topics, discovery_prefix=prefix
                    ):
                        out.append((m.topic, m.payload, "config"))
                    self._devices.add((site, device))
                if self._settings.aggregates:
                    m = series_discovery(
                        site,
                        device,
                        names.sensor[s],
                        names.metric[s],
                        topics=self._topics,
                        discovery_prefix=prefix,
                        window=self._window,
                    )
                    out.append((m.topic, m.payload, "config"))
            except SensorGateError as exc:  # ids are checked at decode: not expected
                log.warning("no discovery config for series %d of %s/%s: %s", s, site, device, exc)
        return out

    def _latest(
        self,
        item: Announcement,
        latest: dict[tuple[int, int], tuple[SeriesNames, AggregateColumns, int]],
    ) -> None:
        """Keep each series' newest closed window of the published window (rows run in time)."""
        cols = item.aggregates
        assert cols is not None
        try:
            wanted = cols.window_names.index(self._window)
        except ValueError:
            return
        uid = item.names.uid  # series indices are per shard: key them by its table too
        for row in (cols.window == wanted).nonzero()[0].tolist():
            latest[(uid, int(cols.series[row]))] = (item.names, cols, row)

    def _publish(self, messages: list[Message]) -> None:
        tickets: list[tuple[Ticket, str]] = []
        failed: list[str] = []
        for topic, body, kind in messages:
            try:
                tickets.append((self._link.publish(topic, body, qos=1, retain=True), topic))
            except BrokerError as exc:
                log.warning("cannot publish Home Assistant message on %r: %s", topic, exc)
                failed.append(topic)
                continue
            if self._metrics is not None:
                self._metrics.ha_messages.labels(kind).inc()
        # One deadline for the batch: a broker that is away costs ack_timeout, not N x.
        deadline = time.monotonic() + self._ack_timeout
        late = [
            topic
            for ticket, topic in tickets
            if not ticket.wait(max(0.0, deadline - time.monotonic()))
        ]
        if late:
            log.warning(
                "the broker did not acknowledge %d Home Assistant message(s) within %.0f s"
                " (first: %r); they go again on reconnect",
                len(late),
                self._ack_timeout,
                late[0],
            )
        if self._metrics is not None and (late or failed):
            self._metrics.ha_unacknowledged.inc(len(late) + len(failed))

    def close(self) -> None:
        self._link.stop()


class HomeAssistantSink(DynamicSink[Announcement]):
    """Publishes Home Assistant discovery configs and the latest aggregates (see above)."""

    def __init__(
        self,
        mqtt: MqttSettings,
        topics: TopicScheme,
        settings: HaDiscoverySettings,
        *,
        window: str,
        metrics: GatewayMetrics | None = None,
        ack_timeout: float = 10.0,
        link_factory: Callable[[MqttSettings], Link] = start_link,
    ) -> None:
        parse_window(window)  # a bad window name fails here, not in a worker
        self._link_factory = link_factory
        self._mqtt = mqtt
        self._topics = topics
        self._settings = settings
        self._window = window
        self._metrics = metrics
        self._ack_timeout = ack_timeout

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _HomeAssistantPartition:
        """Give each worker its own MQTT 5 client (persistent session)."""
        settings = self._mqtt.model_copy(
            update={
                "client_id": f"{self._mqtt.client_id}-{worker_index}",
                "clean_session": False,
                "protocol": "5",
            }
        )
        return _HomeAssistantPartition(
            self._link_factory(settings),
            self._topics,
            self._settings,
            self._window,
            self._ack_timeout,
            self._metrics,
        )
