"""Prometheus metrics of the gateway.

:class:`GatewayMetrics` is the flow's :class:`~dataflows.observer.Observer` and also
what the sinks report to; :mod:`gateway.observability.http` serves it on ``/metrics``.
The metrics themselves are one table, :data:`METRICS`: name, help text, labels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.influx.stats import WriterStats

__all__ = ["METRICS", "GatewayMetrics", "MetricSpec", "Refused", "SourceStats", "StatsWriter"]

log = logging.getLogger(__name__)

_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)


class Refused(Protocol):
    """A broker's refusal, as counted (:class:`edge.mqtt.Refusal` has it)."""

    @property
    def packet(self) -> str:
        """``puback`` or ``suback``."""


class SourceStats(Protocol):
    """What the metrics read of the MQTT source at scrape time."""

    def redelivered(self) -> int:
        """Messages the broker sent again (``dup``)."""

    def received(self) -> int:
        """Messages taken from the broker."""

    def client_cpu_seconds(self) -> float:
        """CPU time of the MQTT network threads."""


class StatsWriter(Protocol):
    """A writer that reports its counters (the InfluxDB writers)."""

    @property
    def stats(self) -> WriterStats:
        """A snapshot of the writer's counters and gauges."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric of :class:`GatewayMetrics`: the attribute that holds it, and its shape."""

    attr: str
    kind: type[Counter] | type[Gauge] | type[Histogram]
    name: str
    help: str
    labels: tuple[str, ...] = ()


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("messages_in", Counter, "sensorgate_messages_in", "Valid telemetry messages in"),
    MetricSpec("readings_in", Counter, "sensorgate_readings_in", "Readings in valid messages"),
    MetricSpec(
        "deadletters",
        Counter,
        "sensorgate_deadletters",
        "Messages rejected, by reason",
        ("reason",),
    ),
    MetricSpec(
        "duplicates", Counter, "sensorgate_duplicate_readings", "Readings dropped by dedupe"
    ),
    MetricSpec(
        "late_readings", Counter, "sensorgate_late_readings", "Readings after their window closed"
    ),
    MetricSpec(
        "points_written",
        Counter,
        "sensorgate_points_written",
        "Points written to InfluxDB",
        ("measurement",),
    ),
    MetricSpec(
        "alarm_events",
        Counter,
        "sensorgate_alarm_events",
        "Alarm events published and stored, by transition and rule kind",
        ("transition", "kind"),
    ),
    MetricSpec(
        "alarm_publish_seconds",
        Histogram,
        "sensorgate_alarm_publish_seconds",
        "From an alarm batch reaching the sink to the broker's PUBACKs and the write",
    ),
    MetricSpec(
        "adapter_skipped",
        Counter,
        "sensorgate_adapter_skipped_values",
        "Values adapters skipped by design (strings, datasets, excluded fields)",
    ),
    MetricSpec(
        "adapter_ignored",
        Counter,
        "sensorgate_adapter_ignored_messages",
        "Foreign messages adapters deliberately left unmapped (reasons at debug level)",
    ),
    MetricSpec(
        "sequence_gaps",
        Counter,
        "sensorgate_sequence_gaps",
        "Sequence numbers devices skipped (messages missing when a later one arrived;"
        " a draining edge backlog may still bring them), per device",
        ("site", "device"),
    ),
    MetricSpec(
        "sequence_resets",
        Counter,
        "sensorgate_sequence_resets",
        "Devices whose sequence started again (new or recreated outbox): their"
        " messages count as new data, never as duplicates",
        ("site", "device"),
    ),
    MetricSpec(
        "evicted_devices",
        Counter,
        "sensorgate_evicted_devices",
        "Idle devices whose state (dedupe, windows, detectors) was forgotten",
    ),
    MetricSpec("evicted_series", Counter, "sensorgate_evicted_series", "Series of evicted devices"),
    MetricSpec(
        "ha_messages",
        Counter,
        "sensorgate_ha_messages",
        "Home Assistant discovery messages published (kind: config or aggregate)",
        ("kind",),
    ),
    MetricSpec(
        "ha_unacknowledged",
        Counter,
        "sensorgate_ha_unacknowledged",
        "Home Assistant messages not acknowledged in time (sent again on reconnect) or"
        " refused by the MQTT client",
    ),
    MetricSpec(
        "shard_errors",
        Counter,
        "sensorgate_shard_errors",
        "Exceptions in the shard step (the batch is retried message by message)",
    ),
    MetricSpec(
        "rules_reloads",
        Counter,
        "sensorgate_rules_reloads",
        "Rules files loaded after a change or SIGHUP",
    ),
    MetricSpec(
        "rules_errors",
        Counter,
        "sensorgate_rules_errors",
        "Rules files refused at reload (the previous rules stay)",
    ),
    MetricSpec(
        "lag",
        Histogram,
        "sensorgate_end_to_end_lag_seconds",
        "Now minus the newest event time of a message, when its readings are stored",
    ),
    MetricSpec(
        "arrival_to_stored",
        Histogram,
        "sensorgate_arrival_to_stored_seconds",
        "From a message's arrival at the gateway to its readings being stored",
    ),
    MetricSpec(
        "mqtt_refused",
        Counter,
        "sensorgate_mqtt_refused",
        "Publishes (PUBACK) and subscriptions (SUBACK) the broker refused with an MQTT 5"
        " reason code (0x87: its ACL does not allow it), by client and packet",
        ("client", "packet"),
    ),
    MetricSpec("ready", Gauge, "sensorgate_ready", "1 when broker and InfluxDB are reachable"),
)
"""Every metric of :class:`GatewayMetrics` (histograms use the lag buckets)."""


class GatewayMetrics:
    """Counters, gauges and histograms of one gateway process (one per :data:`METRICS` row)."""

    messages_in: Counter
    readings_in: Counter
    deadletters: Counter
    duplicates: Counter
    late_readings: Counter
    points_written: Counter
    alarm_events: Counter
    alarm_publish_seconds: Histogram
    adapter_skipped: Counter
    adapter_ignored: Counter
    sequence_gaps: Counter
    sequence_resets: Counter
    evicted_devices: Counter
    evicted_series: Counter
    ha_messages: Counter
    ha_unacknowledged: Counter
    shard_errors: Counter
    rules_reloads: Counter
    rules_errors: Counter
    lag: Histogram
    arrival_to_stored: Histogram
    mqtt_refused: Counter
    ready: Gauge

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        for spec in METRICS:
            if spec.kind is Histogram:
                made: Counter | Gauge | Histogram = Histogram(
                    spec.name,
                    spec.help,
                    spec.labels,
                    registry=self.registry,
                    buckets=_LAG_BUCKETS,
                )
            else:
                made = spec.kind(spec.name, spec.help, spec.labels, registry=self.registry)
            setattr(self, spec.attr, made)
        self._writers: list[StatsWriter] = []
        self.registry.register(_WriterCollector(self._writers))

    def mqtt_refusal(self, client: str) -> Callable[[Refused], None]:
        """Return a hook that counts a client's refusals (``on_refused`` of a link)."""

        def count(refusal: Refused) -> None:
            self.mqtt_refused.labels(client, refusal.packet).inc()

        return count

    def track_source(self, source: SourceStats) -> None:
        """Report the MQTT source's redeliveries and its clients' CPU time."""
        self.registry.register(_SourceCollector(source))

    def track_writer(self, writer: StatsWriter) -> None:
        """Report a writer's counters and spill gauges (anything with ``.stats``)."""
        self._writers.append(writer)

    # Observer protocol (called on Bytewax worker threads).
    def message_in(self, readings: int, messages: int = 1) -> None:
        """Count accepted messages and their readings."""
        self.messages_in.inc(messages)
        self.readings_in.inc(readings)

    def rejected(self, reason: str) -> None:
        """Count a dead letter."""
        self.deadletters.labels(reason).inc()

    def duplicate(self, readings: int) -> None:
        """Count duplicate readings."""
        self.duplicates.inc(readings)

    def late(self, readings: int) -> None:
        """Count late readings."""
        self.late_readings.inc(readings)

    def adapted(self, skipped: int, ignored: list[str]) -> None:
        """Count what adapters skipped or left unmapped."""
        if skipped:
            self.adapter_skipped.inc(skipped)
        if ignored:
            self.adapter_ignored.inc(len(ignored))
            log.debug("adapters left %d message(s) unmapped: %s", len(ignored), ignored[:5])

    def sequence_gap(self, site: str, device: str, missing: int) -> None:
        """Count sequence numbers a device skipped (labelled: only devices with gaps)."""
        self.sequence_gaps.labels(site, device).inc(missing)

    def sequence_reset(self, site: str, device: str) -> None:
        """Count a device's sequence reset."""
        self.sequence_resets.labels(site, device).inc()

    def evicted(self, devices: int, series: int) -> None:
        """Count idle devices and series forgotten."""
        self.evicted_devices.inc(devices)
        self.evicted_series.inc(series)

    def shard_error(self, detail: str) -> None:
        """Count an exception in the shard step (``detail``: its traceback)."""
        self.shard_errors.inc()

    def render(self) -> bytes:
        """Return the Prometheus text exposition."""
        return generate_latest(self.registry)


class _SourceCollector(Collector):
    """Reads the MQTT source's own counters at scrape time."""

    def __init__(self, source: SourceStats) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "sensorgate_redelivered_messages",
            "Messages the broker delivered again (dup flag): in flight at a stop or crash",
            value=self._source.redelivered(),
        )
        yield CounterMetricFamily(
            "sensorgate_mqtt_received_messages",
            "Messages this process's MQTT partitions took from the broker, raw; in a cluster"
            " they are then routed to the process that holds their device's shard",
            value=self._source.received(),
        )
        yield CounterMetricFamily(
            "sensorgate_mqtt_client_cpu_seconds",
            "CPU time of the MQTT clients' network threads (receive, parse, acknowledge)",
            value=self._source.client_cpu_seconds(),
        )


class _WriterCollector(Collector):
    """Reads the InfluxDB writers' own counters at scrape time."""

    def __init__(self, writers: list[StatsWriter]) -> None:
        self._writers = writers

    def collect(self) -> Iterable[Metric]:
        from gateway.influx.resilient import WriterStats

        total = WriterStats.total(w.stats for w in list(self._writers))
        for name, help_text, value in (
            ("sensorgate_write_errors", "Failed InfluxDB write attempts", total.write_errors),
            ("sensorgate_write_retries", "Repeated InfluxDB write attempts", total.retries),
            (
                "sensorgate_rejected_points",
                "Points InfluxDB refused as bad data",
                total.rejected_points,
            ),
            (
                "sensorgate_spilled_points",
                "Points ever put in the spill buffer",
                total.spilled_points,
            ),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        for name, help_text, value in (
            ("sensorgate_spill_bytes", "Bytes waiting in the on-disk spill", total.spill_bytes),
            (
                "sensorgate_spill_batches",
                "Batches waiting in the on-disk spill",
                total.spill_batches,
            ),
            ("sensorgate_spill_points", "Points waiting in the on-disk spill", total.spill_points),
            (
                "sensorgate_spill_full",
                "1 while writes block on a full spill",
                1 if total.spill_full else 0,
            ),
        ):
            yield GaugeMetricFamily(name, help_text, value=value)
