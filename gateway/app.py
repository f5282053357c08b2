"""The gateway composition root: settings in, a runnable Bytewax dataflow out."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx
from bytewax.dataflow import Dataflow

from contract.errors import ConfigError, StorageError
from dataflows.adapters.adapterset import AdapterSet
from dataflows.adapters.config import AdaptersConfig, load_adapters
from dataflows.config import StreamConfig
from dataflows.flow import build_flow
from dataflows.ingest import IngestLimits
from dataflows.registry import Caps
from edge.mqtt import MqttSettings
from gateway.connectors.alarm_sink import AlarmSink
from gateway.connectors.ha_sink import HomeAssistantSink
from gateway.connectors.mqtt_source import MqttSource
from gateway.connectors.sinks import CommandSink, DeadLetterSink, PointsSink, PointsWriter
from gateway.influx.encoder import LineProtocolEncoder
from gateway.influx.layout import StorageLayout
from gateway.influx.pipeline import make_pipelined_writer
from gateway.influx.rejections import WriteRejectionReporter
from gateway.influx.reroute import reroute_spill
from gateway.influx.resilient import make_resilient_writer
from gateway.influx.setup import READY, setup_influx
from gateway.influx.writer import PointWriter
from gateway.observability.health import Health
from gateway.observability.http import serve
from gateway.observability.metrics import GatewayMetrics
from gateway.runtime.recovery import prepare_recovery
from gateway.runtime.rules import RulesWatcher
from gateway.settings import GatewaySettings

if TYPE_CHECKING:
    from bytewax.recovery import RecoveryConfig

__all__ = [
    "GatewayApp",
    "build_gateway",
    "prepare_storage",
    "run_gateway",
]

log = logging.getLogger(__name__)


def prepare_storage(
    settings: GatewaySettings, *, transport: httpx.BaseTransport | None = None
) -> None:
    """Create the database and its retention policies on InfluxDB 1.x, or raise.

    What ``sensorgate influx setup`` does for ``api = "v1"`` without a token: the
    database, then the policies of ``influx.retention`` (created, or altered to the
    configured duration; the raw one made the DEFAULT). Raises
    :class:`~contract.errors.ConfigError` naming ``influx.retention`` when the server
    refuses a policy (the message holds the statement an admin runs), and
    :class:`~contract.errors.StorageError` for anything else. On 2.x/3.x (a token, or
    the v2/v3 API) the buckets and databases belong to their owner: nothing is done.
    ``transport`` is the HTTP seam for tests.
    """
    influx = settings.influx
    if influx.api != "v1" or influx.token is not None:
        return
    report = setup_influx(influx, transport=transport)
    for step in report.steps:
        if step.status in READY:
            continue
        if step.name.startswith("retention"):
            raise ConfigError("influx.retention", f"{step.name}: {step.status}: {step.detail}")
        raise StorageError(f"InfluxDB at {influx.url} is not ready: {step.name}: {step.detail}")
    for step in report.steps:
        if step.status in ("created", "changed"):
            log.info("InfluxDB %s %s: %s", step.name, step.status, step.detail)


@dataclass
class GatewayApp:
    """A built gateway: the flow and the parts that report on it."""

    flow: Dataflow
    source: MqttSource
    metrics: GatewayMetrics
    rules: RulesWatcher
    points_sink: PointsSink


def build_gateway(
    settings: GatewaySettings,
    *,
    stop: threading.Event | None = None,
    metrics: GatewayMetrics | None = None,
    rejections: WriteRejectionReporter | None = None,
    processes: int = 1,
    workers: int = 1,
) -> GatewayApp:
    """Build the gateway flow from settings: MQTT in, InfluxDB and MQTT out.

    ``rejections`` turns points InfluxDB refuses into dead letters; by default one is
    made here (its MQTT connection opens on the first rejection). ``processes`` and
    ``workers`` (per process) size the cluster the flow will run on: they resolve
    ``mqtt.partitions = "auto"`` to one MQTT partition per worker.
    """
    settings = settings.model_copy(update={"mqtt": settings.mqtt.for_cluster(processes, workers)})
    topics = settings.topics
    metrics = metrics or GatewayMetrics()
    stream = _stream_config(settings)
    reporter = rejections or WriteRejectionReporter.from_settings(settings)
    reporter.on_refused = metrics.mqtt_refusal("rejections")
    writers = _WriterFactories(settings, reporter, metrics)
    rules = RulesWatcher(settings.rules_file, check_s=settings.rules_check_s, metrics=metrics)
    adapters = None if settings.adapters_file is None else load_adapters(settings.adapters_file)
    source = _source(settings, adapters, stop, metrics)
    points_sink = PointsSink(
        writers.points("readings"),
        stream.shards,
        metrics,
        aggregates_writer_factory=writers.aggregates(),
    )
    flow = build_flow(
        source,
        topics=topics,
        points_sink=points_sink,
        deadletter_sink=DeadLetterSink(
            writers.sync("deadletters"), _link(settings, "deadletters"), topics, metrics=metrics
        ),
        alarm_sink=_alarm_sink(settings, writers, metrics),
        rules=rules,
        stream=stream,
        encoder=LineProtocolEncoder(
            include_seq=settings.influx.reading_seq,
            aggregate_fields=settings.influx.aggregate_fields,
        ),
        limits=_ingest_limits(settings),
        observer=metrics,
        gateway_id=settings.gateway_id,
        recovery=settings.recovery_path is not None,
        on_error=metrics.shard_error,
        adapters=adapters,
        command_sink=None
        if adapters is None
        else CommandSink(_link(settings, "commands"), metrics=metrics),
        announce_sink=_home_assistant(settings, metrics),
    )
    return GatewayApp(flow, source, metrics, rules, points_sink)


def _alarm_sink(
    settings: GatewaySettings, writers: _WriterFactories, metrics: GatewayMetrics
) -> AlarmSink:
    """Return the alarm sink: events published (MQTT) and stored (InfluxDB)."""
    return AlarmSink(
        writers.sync("alarms"),
        _link(settings, "alarms"),
        settings.topics,
        metrics=metrics,
        gateway_id=settings.gateway_id,
    )


def _link(settings: GatewaySettings, role: str) -> MqttSettings:
    """Return the MQTT link settings of one sink (client id ``{prefix}-{role}``)."""
    return settings.mqtt.link_settings(f"{settings.mqtt.client_id_prefix}-{role}")


def _ingest_limits(settings: GatewaySettings) -> IngestLimits:
    """Return the ingest step's limits from ``settings.ingest``."""
    ingest = settings.ingest
    return IngestLimits(
        max_payload_bytes=ingest.max_payload_bytes,
        max_future=timedelta(seconds=ingest.max_future_s),
        max_past=timedelta(seconds=ingest.max_past_s),
        deadletter_keep_bytes=ingest.deadletter_keep_bytes,
    )


def _stream_config(settings: GatewaySettings) -> StreamConfig:
    """Return the stream steps' configuration from ``settings.stream``."""
    stream = settings.stream
    return StreamConfig.from_strings(
        stream.windows,
        stream.allowed_lateness_s,
        stream.dedupe_intervals,
        stream.quiet_s,
        stream.shards,
        Caps(stream.max_devices, stream.max_series, stream.max_series_per_device),
        stream.evict_idle_s,
    )


class _WriterFactories:
    """The InfluxDB writers of the sinks, each to the retention policy of its measurement.

    Every writer reports refused points to the rejection reporter (dead letters) and
    its counters to the metrics.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        reporter: WriteRejectionReporter,
        metrics: GatewayMetrics,
    ) -> None:
        self._influx = settings.influx
        self._layout = StorageLayout.of(settings.influx)
        self._reporter = reporter
        self._metrics = metrics

    def sync(self, measurement: str) -> Callable[[], PointWriter]:
        """Dead letters and alarms: synchronous writers, one per sink partition."""

        def make() -> PointWriter:
            policy = self._layout.policy(measurement)
            made = self._reporter.bind(make_resilient_writer(self._influx, policy=policy))
            self._metrics.track_writer(made)
            return made

        return make

    def points(self, measurement: str) -> Callable[[], PointsWriter]:
        """Return the pipelined writers' factory for readings, late readings or aggregates.

        One writer per process and retention policy, its timestamps in microseconds
        (what the encoder writes).
        """

        def make() -> PointsWriter:
            policy = self._layout.policy(measurement)
            made = self._reporter.bind(make_pipelined_writer(self._influx, policy=policy))
            self._metrics.track_writer(made)
            return made

        return make

    def aggregates(self) -> Callable[[], PointsWriter] | None:
        """Return the aggregates' own factory, or None when they share the readings' policy."""
        if self._layout.policy("aggregates") == self._layout.policy("readings"):
            return None
        return self.points("aggregates")


def _source(
    settings: GatewaySettings,
    adapters: AdaptersConfig | None,
    stop: threading.Event | None,
    metrics: GatewayMetrics,
) -> MqttSource:
    """Return the MQTT source: the project's topics, and the adapters' foreign ones."""
    extra_filters = None
    if adapters is not None and adapters.adapter:
        adapter_set = AdapterSet(adapters)

        def extra_filters(partition: int) -> list[str]:
            return adapter_set.subscriptions(settings.mqtt.share_group, partition=partition)

    source = MqttSource(
        settings.mqtt,
        settings.topics,
        stop=stop,
        extra_filters=extra_filters,
        on_refused=metrics.mqtt_refusal("source"),
    )
    metrics.track_source(source)
    return source


def _home_assistant(settings: GatewaySettings, metrics: GatewayMetrics) -> HomeAssistantSink | None:
    """Return the Home Assistant discovery sink when ``ha_discovery.enabled``."""
    if not settings.ha_discovery.enabled:
        return None
    return HomeAssistantSink(
        _link(settings, "ha"),
        settings.topics,
        settings.ha_discovery,
        window=settings.ha_window,
        metrics=metrics,
    )


def run_gateway(
    settings: GatewaySettings,
    *,
    workers: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    stop: threading.Event | None = None,
    subscribed: threading.Event | None = None,
    metrics: GatewayMetrics | None = None,
    on_built: Callable[[GatewayApp], None] | None = None,
) -> None:
    """Run the gateway flow until the source ends (``stop`` set) or the process is stopped.

    ``subscribed`` is set once the broker has acknowledged the MQTT subscription.
    ``on_built`` gets the built app before the flow starts (the CLI hooks SIGHUP to
    ``app.rules.request_reload`` there).
    """
    from bytewax.run import cli_main

    recovery = _prepare(settings)
    rejections = WriteRejectionReporter.from_settings(settings)
    processes = len(addresses) if addresses else 1
    app = build_gateway(
        settings,
        stop=stop,
        metrics=metrics,
        rejections=rejections,
        processes=processes,
        workers=workers,
    )
    log.info(
        "cluster of %d process(es) x %d worker(s): %d MQTT partition(s) in share group %r",
        processes,
        workers,
        app.source.settings.partitions,
        app.source.settings.share_group,
    )
    if subscribed is not None:
        app.source.subscribed = subscribed
    if on_built is not None:
        on_built(app)
    app.rules.start()
    stop_serving = _serve_metrics(settings, app, process_id)
    # Spilled points of a previous run drain from the start, not on the first reading.
    release_points = app.points_sink.hold()
    try:
        cli_main(  # type: ignore[no-untyped-call]  # unannotated stub (_bytewax.pyi)
            app.flow,
            workers_per_process=workers,
            process_id=process_id,
            addresses=addresses,
            epoch_interval=timedelta(seconds=settings.epoch_interval_s),
            recovery_config=recovery,
        )
    finally:
        release_points()
        app.rules.stop()
        rejections.close()
        stop_serving()


def _prepare(settings: GatewaySettings) -> RecoveryConfig | None:
    """Get the state ready before connecting; return the recovery config (None: off).

    A bad recovery folder is refused first; then the database and its retention
    policies, and a spill left from before retention policies is rerouted.
    """
    recovery = prepare_recovery(settings)
    prepare_storage(settings)
    reroute_spill(settings.influx)
    return recovery


def _serve_metrics(
    settings: GatewaySettings, app: GatewayApp, process_id: int | None
) -> Callable[[], None]:
    """Serve ``/metrics`` and ``/healthz`` when ``metrics_port`` is set; return the stop.

    Process N of a cluster serves on ``metrics_port + N``.
    """
    if not settings.metrics_port:
        return lambda: None
    source = app.source
    health = Health(
        # Ready once subscribed: before that, the broker would not keep our messages.
        broker_ok=lambda: source.connected() and source.subscribed.is_set(),
        influx_url=settings.influx.url,
        metrics=app.metrics,
        verify=settings.influx.verify(),
    ).start()
    port = settings.metrics_port + (process_id or 0)
    server = serve(app.metrics, health, settings.metrics_host, port)

    def stop() -> None:
        health.stop()
        server.shutdown()
        server.server_close()

    return stop
