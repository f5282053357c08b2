"""Prometheus metrics of the gateway.

:class:`GatewayMetrics` is the flow's :class:`~dataflows.observer.Observer` and also
what the sinks report to; :mod:`gateway.observability.http` serves it on ``/metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["GatewayMetrics"]

log = logging.getLogger(__name__)

_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)


class GatewayMetrics:
    """Counters, gauges and histograms of one gateway process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages_in = Counter(
            "sensorgate_messages_in", "Valid telemetry messages in", registry=r
        )
        self.readings_in = Counter(
            "sensorgate_readings_in", "Readings in valid messages", registry=r
        )
        self.deadletters = Counter(
            "sensorgate_deadletters", "Messages rejected, by reason", ["reason"], registry=r
        )
        self.duplicates = Counter(
            "sensorgate_duplicate_readings", "Readings dropped by dedupe", registry=r
        )
        self.late_readings = Counter(
            "sensorgate_late_readings", "Readings after their window closed", registry=r
        )
        self.points_written = Counter(
            "sensorgate_points_written", "Points written to InfluxDB", ["measurement"], registry=r
        )
        self.alarm_events = Counter(
            "sensorgate_alarm_events",
            "Alarm events published and stored, by transition and rule kind",
            ["transition", "kind"],
            registry=r,
        )
        self.alarm_publish_seconds = Histogram(
            "sensorgate_alarm_publish_seconds",
            "From an alarm batch reaching the sink to the broker's PUBACKs and the write",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.adapter_skipped = Counter(
            "sensorgate_adapter_skipped_values",
            "Values adapters skipped by design (strings, datasets, excluded fields)",
            registry=r,
        )
        self.adapter_ignored = Counter(
            "sensorgate_adapter_ignored_messages",
            "Foreign messages adapters deliberately left unmapped (reasons at debug level)",
            registry=r,
        )
        self.sequence_gaps = Counter(
            "sensorgate_sequence_gaps",
            "Sequence numbers devices skipped (messages missing when a later one arrived;"
            " a draining edge backlog may still bring them), per device",
            ["site", "device"],
            registry=r,
        )
        self.sequence_resets = Counter(
            "sensorgate_sequence_resets",
            "Devices whose sequence started again (new or recreated outbox): their"
            " messages count as new data, never as duplicates",
            ["site", "device"],
            registry=r,
        )
        self.evicted_devices = Counter(
            "sensorgate_evicted_devices",
            "Idle devices whose state (dedupe, windows, detectors) was forgotten",
            registry=r,
        )
        self.evicted_series = Counter(
            "sensorgate_evicted_series", "Series of evicted devices", registry=r
        )
        self.ha_messages = Counter(
            "sensorgate_ha_messages",
            "Home Assistant discovery messages published (kind: config or aggregate)",
            ["kind"],
            registry=r,
        )
        self.ha_unacknowledged = Counter(
            "sensorgate_ha_unacknowledged",
            "Home Assistant messages not acknowledged in time (sent again on reconnect) or"
            " refused by the MQTT client",
            registry=r,
        )
        self.shard_errors = Counter(
            "sensorgate_shard_errors",
            "Exceptions in the shard step (the batch is retried message by message)",
            registry=r,
        )
        self.rules_reloads = Counter(
            "sensorgate_rules_reloads", "Rules files loaded after a change or SIGHUP", registry=r
        )
        self.rules_errors = Counter(
            "sensorgate_rules_errors",
            "Rules files refused at reload (the previous rules stay)",
            registry=r,
        )
        self._writers: list[Any] = []
        r.register(_WriterCollector(self._writers))
        self.lag = Histogram(
            "sensorgate_end_to_end_lag_seconds",
            "Now minus the newest event time of a message, when its readings are stored",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.arrival_to_stored = Histogram(
            "sensorgate_arrival_to_stored_seconds",
            "From a message's arrival at the gateway to its readings being stored",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.mqtt_refused = Counter(
            "sensorgate_mqtt_refused",
            "Publishes (PUBACK) and subscriptions (SUBACK) the broker refused with an MQTT 5"
            " reason code (0x87: its ACL does not allow it), by client and packet",
            ["client", "packet"],
            registry=r,
        )
        self.ready = Gauge(
            "sensorgate_ready", "1 when broker and InfluxDB are reachable", registry=r
        )

    def mqtt_refusal(self, client: str) -> Callable[[Any], None]:
        """Return a hook that counts a client's refusals (``on_refused`` of a link)."""

        def count(refusal: Any) -> None:
            self.mqtt_refused.labels(client, refusal.packet).inc()

        return count

    def track_source(self, source: Any) -> None:
        """Report the MQTT source's redeliveries and its clients' CPU time."""
        self.registry.register(_SourceCollector(source))

    def track_writer(self, writer: Any) -> None:
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

    def __init__(self, source: Any) -> None:
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

    def __init__(self, writers: list[Any]) -> None:
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
