"""The gateway composition root: settings in, a runnable Bytewax dataflow out."""

from __future__ import annotations

import json
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
from dataflows.adapters.config import load_adapters
from dataflows.config import StreamConfig
from dataflows.flow import build_flow
from dataflows.ingest import IngestLimits
from dataflows.registry import Caps
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
from gateway.runtime.rules import RulesWatcher
from gateway.settings import GatewaySettings
from gateway.statedir import private_dir

if TYPE_CHECKING:
    from bytewax.recovery import RecoveryConfig

__all__ = [
    "GatewayApp",
    "build_gateway",
    "prepare_recovery",
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
    mqtt = settings.mqtt.for_cluster(processes, workers)
    settings = settings.model_copy(update={"mqtt": mqtt})
    topics = settings.topics
    metrics = metrics or GatewayMetrics()
    limits = IngestLimits(
        max_payload_bytes=settings.ingest.max_payload_bytes,
        max_future=timedelta(seconds=settings.ingest.max_future_s),
        max_past=timedelta(seconds=settings.ingest.max_past_s),
        deadletter_keep_bytes=settings.ingest.deadletter_keep_bytes,
    )
    stream = StreamConfig.from_strings(
        settings.stream.windows,
        settings.stream.allowed_lateness_s,
        settings.stream.dedupe_intervals,
        settings.stream.quiet_s,
        settings.stream.shards,
        Caps(
            settings.stream.max_devices,
            settings.stream.max_series,
            settings.stream.max_series_per_device,
        ),
        settings.stream.evict_idle_s,
    )

    reporter = rejections or WriteRejectionReporter.from_settings(settings)
    reporter.on_refused = metrics.mqtt_refusal("rejections")
    layout = StorageLayout.of(settings.influx)

    def writer(measurement: str) -> Callable[[], PointWriter]:
        # Dead letters and alarms: synchronous writers, one per sink partition, each
        # to the retention policy of its measurement.
        def make() -> PointWriter:
            made = reporter.bind(
                make_resilient_writer(settings.influx, policy=layout.policy(measurement))
            )
            metrics.track_writer(made)
            return made

        return make

    def points_writer(measurement: str) -> Callable[[], PointsWriter]:
        # Readings and late readings; aggregates: one pipelined writer per process and
        # retention policy, its timestamps in microseconds (what the encoder writes).
        def make() -> PointsWriter:
            made = reporter.bind(
                make_pipelined_writer(settings.influx, policy=layout.policy(measurement))
            )
            metrics.track_writer(made)
            return made

        return make

    same_policy = layout.policy("aggregates") == layout.policy("readings")

    dl_mqtt = settings.mqtt.link_settings(f"{settings.mqtt.client_id_prefix}-deadletters")
    alarm_mqtt = settings.mqtt.link_settings(f"{settings.mqtt.client_id_prefix}-alarms")
    rules = RulesWatcher(settings.rules_file, check_s=settings.rules_check_s, metrics=metrics)
    adapters = None if settings.adapters_file is None else load_adapters(settings.adapters_file)
    extra_filters = None
    if adapters is not None and adapters.adapter:
        adapter_set = AdapterSet(adapters)

        def extra_filters(partition: int) -> list[str]:
            return adapter_set.subscriptions(settings.mqtt.share_group, partition=partition)

    source = MqttSource(
        settings.mqtt,
        topics,
        stop=stop,
        extra_filters=extra_filters,
        on_refused=metrics.mqtt_refusal("source"),
    )
    metrics.track_source(source)
    points_sink = PointsSink(
        points_writer("readings"),
        stream.shards,
        metrics,
        aggregates_writer_factory=None if same_policy else points_writer("aggregates"),
    )
    flow = build_flow(
        source,
        topics=topics,
        points_sink=points_sink,
        deadletter_sink=DeadLetterSink(writer("deadletters"), dl_mqtt, topics, metrics=metrics),
        alarm_sink=AlarmSink(
            writer("alarms"), alarm_mqtt, topics, metrics=metrics, gateway_id=settings.gateway_id
        ),
        rules=rules,
        stream=stream,
        encoder=LineProtocolEncoder(
            include_seq=settings.influx.reading_seq,
            aggregate_fields=settings.influx.aggregate_fields,
        ),
        limits=limits,
        observer=metrics,
        gateway_id=settings.gateway_id,
        recovery=settings.recovery_path is not None,
        on_error=metrics.shard_error,
        adapters=adapters,
        command_sink=None
        if adapters is None
        else CommandSink(
            settings.mqtt.link_settings(f"{settings.mqtt.client_id_prefix}-commands"),
            metrics=metrics,
        ),
        announce_sink=_home_assistant(settings, metrics),
    )
    return GatewayApp(flow, source, metrics, rules, points_sink)


_RECOVERY_MARKER = "sensorgate-recovery.json"


def _home_assistant(settings: GatewaySettings, metrics: GatewayMetrics) -> HomeAssistantSink | None:
    """Return the Home Assistant discovery sink when ``ha_discovery.enabled``."""
    if not settings.ha_discovery.enabled:
        return None
    return HomeAssistantSink(
        settings.mqtt.link_settings(f"{settings.mqtt.client_id_prefix}-ha"),
        settings.topics,
        settings.ha_discovery,
        window=settings.ha_window,
        metrics=metrics,
    )


def _recovery_config(settings: GatewaySettings) -> RecoveryConfig | None:
    """Prepare the recovery folder (0700, its partitions, its marker) or None when off.

    The marker records the shard count: devices are hashed to shards, so state made
    under another count would sit in the wrong shard. A mismatch is refused.
    """
    path = settings.recovery_path
    if path is None:
        return None
    from bytewax.recovery import RecoveryConfig, init_db_dir

    private_dir(path, "recovery_dir")
    marker = path / _RECOVERY_MARKER
    made_for = {"shards": settings.stream.shards}
    if marker.exists():
        found = json.loads(marker.read_text())
        if found.get("shards") != made_for["shards"]:
            raise ConfigError(
                "stream.shards",
                f"{settings.stream.shards} shards, but the recovery folder {path} holds"
                f" state for {found.get('shards')}; set stream.shards back, or move the"
                " folder away to start with empty state",
            )
    if not any(p.suffix == ".sqlite3" for p in path.iterdir()):
        # bytewax's stubs (_bytewax.pyi) leave init_db_dir, RecoveryConfig and cli_main unannotated.
        init_db_dir(path, settings.recovery_partitions)  # type: ignore[no-untyped-call]  # see above
        log.info("created %d recovery partition(s) in %s", settings.recovery_partitions, path)
    if not marker.exists():
        marker.write_text(json.dumps(made_for))
    return RecoveryConfig(str(path))  # type: ignore[no-untyped-call]  # unannotated stub


def prepare_recovery(settings: GatewaySettings) -> RecoveryConfig | None:
    """Prepare the recovery folder once, as a process would at start; None when off.

    ``sensorgate cluster`` calls it before starting its processes, so that they never
    race to create the partitions or the marker.
    """
    return _recovery_config(settings)


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

    recovery = _recovery_config(settings)  # refuse a bad folder before connecting
    prepare_storage(settings)
    reroute_spill(settings.influx)  # a spill left from before retention policies
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
    server = health = None
    if settings.metrics_port:
        source = app.source
        health = Health(
            # Ready once subscribed: before that, the broker would not keep our messages.
            broker_ok=lambda: source.connected() and source.subscribed.is_set(),
            influx_url=settings.influx.url,
            metrics=app.metrics,
            verify=settings.influx.verify(),
        ).start()
        server = serve(
            app.metrics, health, settings.metrics_host, settings.metrics_port + (process_id or 0)
        )
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
        if health is not None:
            health.stop()
        if server is not None:
            server.shutdown()
            server.server_close()
