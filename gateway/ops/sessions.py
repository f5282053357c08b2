"""``sensorgate gateway forget-sessions``: end the broker sessions of retired partitions.

Each source partition of the gateway has a persistent MQTT session at the broker, named
by its client id (:func:`~gateway.connectors.mqtt_source.partition_client_id`), that lives for
``mqtt.session_expiry_s`` after the partition goes away. When ``mqtt.partitions`` is
lowered (say from 8 to 4), the sessions of partitions 4-7 stay behind, still members of
the shared subscription: the broker keeps queueing their share of the telemetry for
clients that will never come back, until the sessions expire.

:func:`forget_sessions` ends such a session the way MQTT 5 allows: it connects with the
session's client id, a session expiry of 0 and no clean start (so the CONNACK says
whether the session existed), unsubscribes the partition's filters (computed from the
settings, as the gateway subscribes them) so that the broker routes nothing more to
it, takes what was queued, and disconnects; the broker then deletes the session. What
the queue held is discarded: the command counts it, so that nothing goes silently
(docs/security.md, "Scaling down").

Partitions below ``mqtt.partitions`` are in use and are refused unless ``force``:
connecting with a live partition's id would take its session over.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from contract.errors import BrokerError, ConfigError
from edge.mqtt import MqttLink, MqttSettings
from gateway.settings import GatewaySettings

__all__ = [
    "ForgetResult",
    "forget_session",
    "forget_sessions",
    "parse_partitions",
    "partition_filters",
    "register",
]

log = logging.getLogger(__name__)

_MAX_PARTITION = 256  # as MqttSourceSettings.partitions


@dataclass(frozen=True, slots=True)
class ForgetResult:
    """What forgetting one partition's session found."""

    partition: int
    client_id: str
    existed: bool
    """The broker still had the session (CONNACK session present)."""
    discarded: int
    """Messages the broker delivered from the session before it was ended (its queue,
    plus any share routed to it meanwhile): discarded, never processed."""
    counted_all: bool = True
    """False when ``drain_s`` ran out first: more were discarded than counted."""


def parse_partitions(text: str) -> list[int]:
    """Parse ``"4-7"``, ``"4,6"`` or ``"4-5,9"`` into sorted partition numbers.

    >>> parse_partitions("4-6,9")
    [4, 5, 6, 9]
    """
    found: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            first, last = int(low), int(high) if sep else int(low)
        except ValueError:
            raise ConfigError(
                "--partitions", f"expected numbers or ranges like 4-7; got {part!r}"
            ) from None
        if not 0 <= first <= last < _MAX_PARTITION:
            raise ConfigError(
                "--partitions", f"expected 0 <= first <= last < {_MAX_PARTITION}; got {part!r}"
            )
        found.update(range(first, last + 1))
    if not found:
        raise ConfigError("--partitions", "name at least one partition, like 4-7")
    return sorted(found)


class _Deliveries:
    """Counts what the broker delivers to a session being forgotten (on paho's thread)."""

    def __init__(self) -> None:
        self.received = 0  # messages the broker delivered
        self.last = time.monotonic()  # when the last one came
        self.lock = threading.Lock()

    def add(self, _msg: object) -> None:
        """Count one delivered message."""
        with self.lock:
            self.received += 1
            self.last = time.monotonic()

    def drain(self, idle_s: float, drain_s: float) -> tuple[int, bool]:
        """Count deliveries until ``idle_s`` passes without one (at most ``drain_s``).

        Returns (messages counted, whether the quiet came before the deadline).
        """
        with self.lock:
            self.last = time.monotonic()
        deadline = time.monotonic() + drain_s
        counted_all = False
        while time.monotonic() < deadline:
            with self.lock:
                quiet = time.monotonic() - self.last
            if quiet >= idle_s:
                counted_all = True
                break
            time.sleep(min(0.05, idle_s))
        with self.lock:
            return self.received, counted_all


def forget_session(
    settings: MqttSettings,
    filters: list[str],
    *,
    idle_s: float = 0.5,
    drain_s: float = 60.0,
    timeout_s: float = 10.0,
) -> tuple[bool, int, bool]:
    """End the session of ``settings.client_id``, whose subscriptions are ``filters``.

    Connects (MQTT 5, no clean start, Session Expiry Interval 0), unsubscribes
    ``filters``, counts what the broker delivers until ``idle_s`` passes without a
    message (at most ``drain_s``), and disconnects: with an expiry of 0 the broker
    deletes the session at once. Returns (the session existed, messages discarded, all
    of them were counted). Raises :class:`~contract.errors.BrokerError` when the broker
    cannot be reached, refuses the connection or does not answer the UNSUBSCRIBE.
    """
    # A persistent session (no clean start, so the CONNACK says whether it existed)
    # that expires as soon as this connection ends.
    forget = settings.model_copy(
        update={"protocol": "5", "clean_session": False, "session_expiry_s": 0}
    )
    deliveries = _Deliveries()
    link = MqttLink(forget, on_message=deliveries.add)
    try:
        link.start(wait_s=timeout_s, fail_fast=True)
    except BrokerError as exc:
        raise BrokerError(f"cannot forget the session {settings.client_id!r}: {exc}") from exc
    try:
        present = link.session_present
        # First stop the routing: once the UNSUBACK is in, the broker sends this session
        # nothing new, and what it queued before (sent right after the CONNACK; paho
        # acknowledges each one) is counted, then dropped with the session.
        if filters:
            link.unsubscribe(filters, timeout=timeout_s)
        discarded, counted_all = deliveries.drain(idle_s, drain_s)
    finally:
        link.stop()
    return present, discarded, counted_all


def partition_filters(settings: GatewaySettings, partition: int) -> list[str]:
    """Return what source ``partition`` of a gateway with ``settings`` subscribes to."""
    from gateway.connectors.mqtt_source import MqttSource

    source = MqttSource(settings.mqtt, settings.topics)
    filters = source.topic_filters + ([source.status_filter] if partition == 0 else [])
    if settings.adapters_file is not None:
        from dataflows.adapters.adapterset import AdapterSet
        from dataflows.adapters.config import load_adapters

        adapters = AdapterSet(load_adapters(settings.adapters_file))
        filters += adapters.subscriptions(settings.mqtt.share_group, partition=partition)
    return filters


def forget_sessions(
    settings: GatewaySettings,
    partitions: Iterable[int],
    *,
    force: bool = False,
    processes: int = 1,
    workers: int = 1,
    idle_s: float = 0.5,
    drain_s: float = 60.0,
    timeout_s: float = 10.0,
) -> list[ForgetResult]:
    """End the broker sessions of the source ``partitions`` (retired ones) of a gateway.

    Raises :class:`ConfigError` for a partition still in use (below the partition count
    of a cluster of ``processes`` x ``workers``; ``mqtt.partitions = "auto"`` depends on
    it) unless ``force``.
    """
    from gateway.connectors.mqtt_source import partition_client_id

    mqtt = settings.mqtt
    wanted = sorted(set(partitions))
    count = mqtt.partition_count(processes, workers)
    auto = mqtt.partitions == "auto"
    in_use = [p for p in wanted if p < count]
    if in_use and not force:
        raise ConfigError(
            "--partitions",
            f"{in_use} are below mqtt.partitions ({count}"
            + (f": auto, {processes} process(es) x {workers} worker(s)" if auto else "")
            + "): in use by the"
            " running gateway, whose session would be taken over. Lower mqtt.partitions"
            " first (docs/security.md), or pass --force if no gateway uses them",
        )
    results = []
    for partition in wanted:
        client_id = partition_client_id(mqtt, partition)
        existed, discarded, counted_all = forget_session(
            mqtt.link_settings(client_id),
            partition_filters(settings, partition),
            idle_s=idle_s,
            drain_s=drain_s,
            timeout_s=timeout_s,
        )
        if discarded:
            log.warning(
                "partition %d (%s): %s%d queued message(s) discarded with its session",
                partition,
                client_id,
                "" if counted_all else "at least ",
                discarded,
            )
        results.append(ForgetResult(partition, client_id, existed, discarded, counted_all))
    return results


def register(gateway_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``forget-sessions`` to the ``sensorgate gateway`` sub-commands."""
    p = gateway_sub.add_parser(
        "forget-sessions",
        help="end the broker sessions of source partitions no longer in use",
        description="After lowering mqtt.partitions, end the persistent MQTT sessions of"
        " the partitions that went away, so that the broker stops queueing their share of"
        " the telemetry. Connects with each one's client id (MQTT 5, session expiry 0),"
        " unsubscribes its filters and disconnects; reports whether each session existed and"
        " how many queued messages were discarded with it. Broker, TLS and user from the"
        " gateway settings.",
        epilog="Example: sensorgate gateway forget-sessions --partitions 4-7",
    )
    p.add_argument("--partitions", required=True, help="partitions to forget: 4-7, 4,6, 4-5,9")
    p.add_argument(
        "--force",
        action="store_true",
        help="also partitions below mqtt.partitions (only when no gateway is running)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="processes of the running cluster (with mqtt.partitions = auto; default 1)",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="workers per process (with auto; default 1)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the client ids only")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=_cmd_forget)


def _cmd_forget(args: argparse.Namespace) -> int:
    from gateway.connectors.mqtt_source import partition_client_id
    from gateway.settings import load_settings

    settings = load_settings()
    partitions = parse_partitions(args.partitions)
    if args.dry_run:
        for partition in partitions:
            print(partition_client_id(settings.mqtt, partition))
        return 0
    results = forget_sessions(
        settings, partitions, force=args.force, processes=args.processes, workers=args.workers
    )
    if args.json:
        print(json.dumps([asdict(r) for r in results]))
        return 0
    for r in results:
        state = "ended" if r.existed else "none (already gone)"
        print(f"partition {r.partition:>3}  {r.client_id}  session: {state}", end="")
        more = "" if r.counted_all else "+"
        print(f"  discarded: {r.discarded}{more}" if r.existed else "", file=sys.stdout)
    return 0
