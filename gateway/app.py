"""The gateway composition root: settings in, a runnable Bytewax dataflow out."""

from __future__ import annotations

import threading
from datetime import timedelta

from bytewax.dataflow import Dataflow

from dataflows.flow import build_flow
from dataflows.ingest import IngestLimits, Ingestor
from gateway.influx.resilient import make_resilient_writer
from gateway.influx.writer import PointWriter, make_writer
from gateway.mqtt_source import MqttSource
from gateway.rejections import WriteRejectionReporter
from gateway.settings import GatewaySettings
from gateway.sinks import DeadLetterSink, ReadingsSink

__all__ = ["build_gateway_flow", "prepare_storage", "run_gateway"]


def prepare_storage(settings: GatewaySettings) -> None:
    """Create the v1 database if needed (v2 buckets are created by their owner)."""
    writer = make_writer(settings.influx)
    try:
        if settings.influx.api == "v1":
            writer.ensure_database()  # type: ignore[union-attr]
    finally:
        writer.close()


def build_gateway_flow(
    settings: GatewaySettings,
    *,
    stop: threading.Event | None = None,
    subscribed: threading.Event | None = None,
    rejections: WriteRejectionReporter | None = None,
) -> Dataflow:
    """Build the gateway flow from settings: MQTT in, InfluxDB and MQTT out.

    ``rejections`` turns points InfluxDB refuses into dead letters; by default one is
    made here (its MQTT connection opens on the first rejection).
    """
    topics = settings.topics
    limits = IngestLimits(
        max_payload_bytes=settings.ingest.max_payload_bytes,
        max_future=timedelta(seconds=settings.ingest.max_future_s),
        max_past=timedelta(seconds=settings.ingest.max_past_s),
    )

    reporter = rejections or WriteRejectionReporter.from_settings(settings)

    def writer() -> PointWriter:
        # Each sink partition gets its own writer: one request in flight, its own spill.
        return reporter.bind(make_resilient_writer(settings.influx))

    dl_mqtt = settings.mqtt.link_settings(f"{settings.mqtt.client_id_prefix}-deadletters")
    source = MqttSource(settings.mqtt, topics, stop=stop)
    if subscribed is not None:
        source.subscribed = subscribed
    return build_flow(
        source,
        ingestor=Ingestor(topics, limits),
        readings_sink=ReadingsSink(writer),
        deadletter_sink=DeadLetterSink(writer, dl_mqtt, topics),
        gateway_id=settings.gateway_id,
    )


def run_gateway(
    settings: GatewaySettings,
    *,
    workers: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    stop: threading.Event | None = None,
    subscribed: threading.Event | None = None,
) -> None:
    """Run the gateway flow until the source ends (``stop`` set) or the process is stopped.

    ``subscribed`` is set once the broker has acknowledged the MQTT subscription.
    """
    from bytewax.run import cli_main

    prepare_storage(settings)
    rejections = WriteRejectionReporter.from_settings(settings)
    flow = build_gateway_flow(settings, stop=stop, subscribed=subscribed, rejections=rejections)
    try:
        cli_main(
            flow,
            workers_per_process=workers,
            process_id=process_id,
            addresses=addresses,
            epoch_interval=timedelta(seconds=settings.epoch_interval_s),
            recovery_config=None,
        )
    finally:
        rejections.close()
