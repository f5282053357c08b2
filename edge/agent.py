"""The edge agent: sample, batch, store, publish, report, follow remote config.

Threads and who owns what:

* the **main loop** (:meth:`Agent.run`) owns the sampler, the batcher and the live
  config: it reads due sensors, closes batches into telemetry events, stores them
  in the outbox, sends heartbeats and applies remote config;
* the **publisher** thread drains the outbox to the broker (see
  :mod:`edge.publisher`);
* **paho's** network thread only hands things over (a config message into a queue, a
  PUBACK or a connection as a wake-up): no disk or sensor I/O in its callbacks.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from contract.codec import encode
from contract.errors import ConfigError, StorageError
from contract.events import Reading, TelemetryEvent
from edge.batcher import Batch, Batcher
from edge.clock import Clock, SystemClock
from edge.config import (
    AgentConfig,
    RemoteConfig,
    check_live_only,
    load_config,
    parse_remote_config,
)
from edge.drivers.registry import DriverRegistry, build_drivers
from edge.outbox import Outbox
from edge.publisher import Publisher
from edge.sampler import Sampler
from edge.status import StatusBoard
from edge.transport import Transport

if TYPE_CHECKING:  # paho is imported lazily: `check` and the unit tests do not need it
    from edge.mqtt import MqttLink, MqttSettings

__all__ = ["Agent", "build_drivers", "mqtt_settings"]  # build_drivers: edge.drivers.registry

log = logging.getLogger(__name__)

_MAX_UNSTORED_BATCHES = 1000
_DROP_STATUS_EVERY_S = 5.0


def mqtt_settings(config: AgentConfig) -> MqttSettings:
    """Return the :class:`~edge.mqtt.MqttSettings` of an agent config."""
    from edge.mqtt import MqttSettings

    m = config.mqtt
    return MqttSettings(
        host=m.host,
        port=m.port,
        client_id=config.client_id,
        username=m.username,
        password=m.password,
        tls=m.tls,
        keepalive_s=m.keepalive_s,
        clean_session=False,  # persistent session: the broker keeps our QoS 1 state
        protocol=m.protocol,
        reconnect_min_s=m.reconnect_min_s,
        reconnect_max_s=m.reconnect_max_s,
        reconnect_jitter=m.reconnect_jitter,
    )


class Agent:
    """One device's agent. ``run()`` blocks until :meth:`stop`; ``step()`` is one round."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        registry: DriverRegistry | None = None,
        clock: Clock | None = None,
        transport: Transport | None = None,
        on_readings: Callable[[list[Reading]], None] | None = None,
        config_path: Path | str | None = None,
    ) -> None:
        self.base_config = config
        self.config_path = Path(config_path) if config_path is not None else None
        self._reload_requested = threading.Event()
        self.config = config
        self.clock = clock or SystemClock()
        self.drivers = build_drivers(config, registry)
        self._transport = transport
        self._on_readings = on_readings
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._config_queue: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._last_config_payload: bytes | None = None
        self._unstored: list[Batch] = []
        self._last_drop_status = float("-inf")
        self._dropped_unreported = 0
        self._started = False
        self.link: MqttLink | None = None
        topics = config.topics
        self.telemetry_topic = topics.telemetry(config.site, config.device)
        self.status_topic = topics.status(config.site, config.device)
        self.config_topic = topics.config(config.site, config.device)

        self.outbox = Outbox(
            config.outbox.path,
            max_events=config.outbox.max_events,
            max_bytes=config.outbox.max_bytes,
            durability=config.outbox.durability,
        )
        if config.outbox.sequence_block is not None:
            log.warning(
                "outbox.sequence_block is deprecated and ignored: sequences are now numbered"
                " in the transaction that stores the event"
            )
        self.sampler = Sampler(self.clock, on_fault_change=self._fault_changed)
        for sensor in config.sensors:
            self.sampler.add(sensor.id, self.drivers[sensor.id], sensor.interval_s)
        self.batcher = Batcher(
            max_readings=config.batch.max_readings, max_age_s=config.batch.max_age_s
        )
        self.status = StatusBoard(
            clock=self.clock,
            config=lambda: self.config,
            config_source=lambda: "file" if self.config is self.base_config else "remote",
            sampler=self.sampler,
            outbox=self.outbox,
        )
        self._next_heartbeat = self.clock.monotonic() + config.status.heartbeat_s
        self.publisher: Publisher | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Open the link (in the background) and start the publisher."""
        if self._started:
            return
        self._started = True
        transport: Transport | None = self._transport
        if transport is None:
            from edge.mqtt import MqttLink, Will

            link = MqttLink(
                mqtt_settings(self.config),
                will=Will(self.status_topic, self.status.offline("connection lost")),
                on_connect=lambda _link: self._on_connect(),
                on_message=self._on_message,
                on_publish=lambda _mid: self.publisher.wake() if self.publisher else None,
            )
            self.link = transport = link
        self.publisher = Publisher(
            transport,
            self.outbox,
            max_rate=self.config.outbox.max_rate,
            max_inflight=self.config.outbox.max_inflight,
            clock=self.clock,
            birth=lambda: (self.status_topic, self.status.online("birth")),
        )
        self.status.publisher = self.publisher
        if self.link is not None:
            self.link.start(wait_s=None)  # never block on the broker: sampling starts now
            self.publisher.start()
        elif transport.connected:
            self.publisher.connected()
        log.info(
            "agent %s/%s started: %d sensor(s), outbox %s (%d waiting)",
            self.config.site,
            self.config.device,
            len(self.drivers),
            self.outbox.path,
            self.outbox.depth,
        )

    def run(self) -> None:
        """Sample and publish until :meth:`stop` is called; then shut down cleanly."""
        self.start()
        try:
            while not self._stopping.is_set():
                timeout = self.step()
                self.clock.wait(self._wake, timeout)
                self._wake.clear()
        finally:
            self.shutdown()

    def stop(self) -> None:
        """Ask :meth:`run` to return (thread-safe, signal-safe)."""
        self._stopping.set()
        self._wake.set()

    def shutdown(self, *, drain_s: float = 2.0) -> None:
        """Store what is batched, give in-flight events a moment, say goodbye, close."""
        for batch in self.batcher.flush():
            self._store(batch)
        self._retry_unstored()
        if self.publisher is not None:
            self.publisher.stop(drain_s=drain_s)
        if self.link is not None:
            if self.link.connected:
                ticket = self.link.publish(
                    self.status_topic, self.status.offline("shutdown"), qos=1, retain=True
                )
                ticket.wait(2.0)
            self.link.stop()
        self.sampler.close()
        self.outbox.close()
        log.info("agent stopped")

    # -- paho thread: hand over only -----------------------------------------------------
    def _on_connect(self) -> None:
        if self.config.remote_config and self.link is not None:
            self.link.subscribe(self.config_topic, qos=1)
        if self.publisher is not None:
            self.publisher.connected()

    def _on_message(self, msg: object) -> None:
        topic = getattr(msg, "topic", None)
        if topic == self.config_topic:
            self._config_queue.put(bytes(getattr(msg, "payload", b"")))
            self._wake.set()

    def request_reload(self) -> None:
        """Re-read the config file at the next round (SIGHUP; thread- and signal-safe)."""
        self._reload_requested.set()
        self._wake.set()

    def handle_config_payload(self, payload: bytes) -> None:
        """Queue a config-topic payload (what the MQTT callback does)."""
        self._config_queue.put(payload)
        self._wake.set()

    # -- main loop -----------------------------------------------------------------------
    def step(self) -> float:
        """Do everything that is due; return the seconds until something else is."""
        if self._reload_requested.is_set():
            self._reload_requested.clear()
            self.reload_file()
        self._apply_config_messages()
        readings = self.sampler.sample_due()
        now = self.clock.monotonic()
        batches: list[Batch] = []
        if readings:
            if self._on_readings is not None:
                self._on_readings(readings)
            batches.extend(self.batcher.add(self.config.device, readings, now))
        batches.extend(self.batcher.due(now))
        self._retry_unstored()
        for batch in batches:
            self._store(batch)
        if now >= self._next_heartbeat:
            self._send_status("heartbeat")
            self._next_heartbeat = now + self.config.status.heartbeat_s
        deadlines = [self.sampler.next_due(), self.batcher.next_deadline(), self._next_heartbeat]
        nearest = min(d for d in deadlines if d is not None)
        return max(0.0, nearest - self.clock.monotonic())

    def _store(self, batch: Batch) -> None:
        cfg = self.config
        now_utc = self.clock.now()

        def encoded(sequence: int) -> bytes:
            event = TelemetryEvent.create(
                site=cfg.site,
                device=batch.device,
                sequence=sequence,
                readings=batch.readings,
                time=now_utc,
                outbox=self.outbox.id,
            )
            return encode(event)

        try:
            # Numbered and stored in one transaction: a crash keeps both or neither.
            _sequence, dropped = self.outbox.append(self.telemetry_topic, batch.device, encoded)
        except StorageError as exc:
            # Disk full or failing: keep the batch in memory and retry, bounded.
            log.error("cannot store a batch of %d reading(s): %s", len(batch.readings), exc)
            self._unstored.append(batch)
            if len(self._unstored) > _MAX_UNSTORED_BATCHES:
                lost = self._unstored.pop(0)
                log.error("dropped %d reading(s) that could not be stored", len(lost.readings))
            return
        self.status.events_stored += 1
        self.status.readings_stored += len(batch.readings)
        if self.publisher is not None:
            self.publisher.wake()
        if dropped:
            self._dropped_unreported += dropped
            now = self.clock.monotonic()
            # Over budget, every new event pushes one out: report in summaries, not per event.
            if now - self._last_drop_status >= _DROP_STATUS_EVERY_S:
                self._last_drop_status = now
                log.warning(
                    "outbox over budget: dropped the %d oldest event(s) (%d in total)",
                    self._dropped_unreported,
                    self.outbox.stats().dropped_total,
                )
                self._dropped_unreported = 0
                self._send_status("outbox_dropped")

    def _retry_unstored(self) -> None:
        pending, self._unstored = self._unstored, []
        for batch in pending:
            self._store(batch)

    def _send_status(self, event: str) -> None:
        if self.publisher is not None:
            self.publisher.send_status(
                self.status_topic, self.status.online(event), replaceable=event == "heartbeat"
            )

    def _fault_changed(self, sensor_id: str, fault: str | None) -> None:
        self._send_status("sensor_fault" if fault is not None else "sensor_recovered")

    # -- remote config -------------------------------------------------------------------
    def _apply_config_messages(self) -> None:
        while True:
            try:
                payload = self._config_queue.get_nowait()
            except queue.Empty:
                return
            self.apply_remote_config(payload)

    def reload_file(self) -> bool:
        """Re-read the config file; apply its live settings or refuse it, keep running.

        A file that cannot be read, is not TOML or fails validation is refused with
        the field and the reason (log and a ``config_rejected`` status): the agent
        goes on with the config it has. A valid file whose changes are all live
        (sensor intervals, batching, heartbeat) is applied, with any remote config
        still on top. A change to anything else (broker, outbox, sensors' drivers
        or options, ids) needs a restart: it is refused the same way, naming the key.
        """
        if self.config_path is None:
            log.warning("reload requested but the agent was not started from a file")
            return False
        try:
            new = load_config(self.config_path)
            check_live_only(self.base_config, new)
            remote = None
            if self._last_config_payload is not None and self.config is not self.base_config:
                remote = parse_remote_config(self._last_config_payload, new)
        except ConfigError as exc:
            log.error(
                "refused the config file %s: %s; the agent keeps running on its current config",
                self.config_path,
                exc,
            )
            self.status.record_config_error(exc.field, exc.reason, source="file")
            self._send_status("config_rejected")
            return False
        self.base_config = new
        self._apply(remote)
        if logging.getLogger().level != logging.getLevelName(new.log_level):
            logging.getLogger().setLevel(new.log_level)
        self.status.record_config_applied(self.status.config_revision if remote else None)
        log.info("reloaded %s (hash %s)", self.config_path, self.config.config_hash())
        self._send_status("config_applied")
        return True

    def apply_remote_config(self, payload: bytes) -> bool:
        """Validate and apply a config-topic payload; refuse it (and say so) if invalid."""
        if payload == self._last_config_payload:
            return True  # the retained copy re-delivered at reconnect
        try:
            remote = parse_remote_config(payload, self.base_config)
        except ConfigError as exc:
            log.warning("refused remote config: %s", exc)
            self.status.record_config_error(exc.field, exc.reason)
            self._send_status("config_rejected")
            return False
        self._last_config_payload = payload
        self._apply(remote)
        self.status.record_config_applied(remote.revision if remote else None)
        log.info("applied remote config (hash %s)", self.config.config_hash())
        self._send_status("config_applied")
        return True

    def _apply(self, remote: RemoteConfig | None) -> None:
        new = self.base_config if remote is None else self.base_config.with_remote(remote)
        for sensor in new.sensors:
            self.sampler.set_interval(sensor.id, sensor.interval_s)
        self.batcher.reconfigure(max_readings=new.batch.max_readings, max_age_s=new.batch.max_age_s)
        if new.status.heartbeat_s != self.config.status.heartbeat_s:
            self._next_heartbeat = self.clock.monotonic() + new.status.heartbeat_s
        self.config = new

    @property
    def sensor_intervals(self) -> Mapping[str, float]:
        """The interval of each sensor now in force."""
        return {sid: slot.interval_s for sid, slot in self.sampler.slots.items()}
