"""The gateway composition root: settings in, a runnable Bytewax dataflow out."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bytewax.dataflow import Dataflow

from dataflows.device import StreamConfig
from dataflows.flow import build_flow
from dataflows.ingest import IngestLimits, Ingestor
from gateway.influx.resilient import make_resilient_writer
from gateway.influx.writer import PointWriter, make_writer
from gateway.metrics import GatewayMetrics, Health, serve
from gateway.mqtt_source import MqttSource
from gateway.rejections import WriteRejectionReporter
from gateway.settings import GatewaySettings
from gateway.sinks import DeadLetterSink, PointsSink

__all__ = ["GatewayApp", "build_gateway", "prepare_storage", "run_gateway"]

log = logging.getLogger(__name__)


def prepare_storage(settings: GatewaySettings) -> None:
    """Create the v1 database if needed (v2 buckets are created by their owner)."""
    writer = make_writer(settings.influx)
    try:
        if settings.influx.api == "v1":
            writer.ensure_database()  # type: ignore[union-attr]
    finally:
        writer.close()


@dataclass
class GatewayApp:
    """A built gateway: the flow and the parts that report on it."""

    flow: Dataflow
    source: MqttSource
    metrics: GatewayMetrics


def build_gateway(
    settings: GatewaySettings,
    *,
    stop: threading.Event | None = None,
    metrics: GatewayMetrics | None = None,
    rejections: WriteRejectionReporter | None = None,
) -> GatewayApp:
    """Build the gateway flow from settings: MQTT in, InfluxDB and MQTT out.

    ``rejections`` turns points InfluxDB refuses into dead letters; by default one is
    made here (its MQTT connection opens on the first rejection).
    """
    topics = settings.topics
    metrics = metrics or GatewayMetrics()
    limits = IngestLimits(
        max_payload_bytes=settings.ingest.max_payload_bytes,
        max_future=timedelta(seconds=settings.ingest.max_future_s),
        max_past=timedelta(seconds=settings.ingest.max_past_s),
    )
    stream = StreamConfig.from_strings(
        settings.stream.windows,
        settings.stream.allowed_lateness_s,
        settings.stream.dedupe_intervals,
        settings.stream.quiet_s,
    )

    reporter = rejections or WriteRejectionReporter.from_settings(settings)

    def writer() -> PointWriter:
        # Each sink partition gets its own writer: one request in flight, its own spill.
        made = reporter.bind(make_resilient_writer(settings.influx))
        metrics.track_writer(made)
        return made

    dl_mqtt = settings.mqtt.link_settings(f"{settings.mqtt.client_id_prefix}-deadletters")
    source = MqttSource(settings.mqtt, topics, stop=stop)
    flow = build_flow(
        source,
        ingestor=Ingestor(topics, limits),
        points_sink=PointsSink(writer, metrics),
        deadletter_sink=DeadLetterSink(writer, dl_mqtt, topics),
        stream=stream,
        observer=metrics,
        gateway_id=settings.gateway_id,
    )
    return GatewayApp(flow, source, metrics)


def _recovery_config(settings: GatewaySettings) -> object | None:
    if settings.recovery_dir is None:
        return None
    from bytewax.recovery import RecoveryConfig, init_db_dir

    path = Path(settings.recovery_dir)
    if not path.exists() or not any(path.iterdir()):
        path.mkdir(parents=True, exist_ok=True)
        init_db_dir(path, settings.recovery_partitions)
        log.info("created %d recovery partition(s) in %s", settings.recovery_partitions, path)
    return RecoveryConfig(str(path))


def run_gateway(
    settings: GatewaySettings,
    *,
    workers: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    stop: threading.Event | None = None,
    subscribed: threading.Event | None = None,
    metrics: GatewayMetrics | None = None,
) -> None:
    """Run the gateway flow until the source ends (``stop`` set) or the process is stopped.

    ``subscribed`` is set once the broker has acknowledged the MQTT subscription.
    """
    from bytewax.run import cli_main

    prepare_storage(settings)
    rejections = WriteRejectionReporter.from_settings(settings)
    app = build_gateway(settings, stop=stop, metrics=metrics, rejections=rejections)
    if subscribed is not None:
        app.source.subscribed = subscribed
    server = health = None
    if settings.metrics_port:
        source = app.source
        health = Health(
            # Ready once subscribed: before that, the broker would not keep our messages.
            broker_ok=lambda: source.connected() and source.subscribed.is_set(),
            influx_url=settings.influx.url,
            metrics=app.metrics,
        ).start()
        server = serve(
            app.metrics, health, settings.metrics_host, settings.metrics_port + (process_id or 0)
        )
    try:
        cli_main(
            app.flow,
            workers_per_process=workers,
            process_id=process_id,
            addresses=addresses,
            epoch_interval=timedelta(seconds=settings.epoch_interval_s),
            recovery_config=_recovery_config(settings),
        )
    finally:
        rejections.close()
        if health is not None:
            health.stop()
        if server is not None:
            server.shutdown()
            server.server_close()
