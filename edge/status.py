"""What the device says about itself: birth, heartbeat, last will, goodbye.

All of it goes to the device's retained status topic: ``online`` (a
:class:`~contract.events.DeviceOnlineEvent`) at every connection and then at every
heartbeat, with figures in ``details``; ``offline`` (a
:class:`~contract.events.DeviceOfflineEvent`) as the broker-held last will, and on
a clean stop. The will is built once at start, so its ``time`` is the start time:
the broker, not the device, decides when it is published.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from contract.codec import encode
from contract.events import DeviceOfflineEvent, DeviceOnlineEvent
from edge.clock import Clock
from edge.config import AgentConfig
from edge.outbox import Outbox
from edge.publisher import Publisher
from edge.sampler import Sampler

__all__ = ["AGENT_VERSION", "StatusBoard", "agent_version"]


def agent_version() -> str:
    """Return the installed sensorgate version (``0+unknown`` from a bare tree)."""
    try:
        return version("sensorgate")
    except PackageNotFoundError:
        return "0+unknown"


AGENT_VERSION = agent_version()


class StatusBoard:
    """Collects the figures of a running agent and builds its status events."""

    def __init__(
        self,
        *,
        clock: Clock,
        config: Callable[[], AgentConfig],
        config_source: Callable[[], str],
        sampler: Sampler,
        outbox: Outbox,
        publisher: Publisher | None = None,
    ) -> None:
        self.clock = clock
        self._config = config
        self._config_source = config_source
        self.sampler = sampler
        self.outbox = outbox
        self.publisher = publisher
        self.started_mono = clock.monotonic()
        self.started_at = clock.now()
        self._lock = threading.Lock()
        self.config_error: dict[str, str] | None = None
        self.config_revision: str | None = None
        self.events_stored = 0
        self.readings_stored = 0

    def record_config_error(self, field: str, reason: str, *, source: str = "remote") -> None:
        """Remember a refused config, remote or file (reported until a valid one arrives)."""
        with self._lock:
            self.config_error = {
                "field": field,
                "reason": reason,
                "at": self.clock.now().isoformat(),
                "source": source,
            }

    def record_config_applied(self, revision: str | None) -> None:
        """Forget the last refusal: a valid config is in force."""
        with self._lock:
            self.config_error = None
            self.config_revision = revision

    def details(self, event: str) -> dict[str, Any]:
        """Return the figures carried in ``data.details``."""
        cfg = self._config()
        out = self.outbox.stats()
        sensors = {}
        for sid, slot in list(self.sampler.slots.items()):
            sensors[sid] = {
                "driver": slot.driver.kind,
                "interval_s": slot.interval_s,
                "samples": slot.samples,
                "missed_ticks": slot.missed,
                "faults": slot.faults,
                "faulty": slot.faulty,
                "last_fault": slot.last_fault,
            }
        details: dict[str, Any] = {
            "event": event,
            "uptime_s": round(self.clock.monotonic() - self.started_mono, 3),
            "started_at": self.started_at.isoformat(),
            "outbox_depth": out.depth,
            "outbox_bytes": out.bytes,
            "dropped_total": out.dropped_total,
            "events_stored": self.events_stored,
            "readings_stored": self.readings_stored,
            "faults_total": sum(s["faults"] for s in sensors.values()),
            "sensors": sensors,
            "batch": {"max_readings": cfg.batch.max_readings, "max_age_s": cfg.batch.max_age_s},
            "heartbeat_s": cfg.status.heartbeat_s,
            "config_source": self._config_source(),
        }
        if self.publisher is not None:
            pub = self.publisher.stats()
            details.update(
                sent_total=pub.sent,
                acked_total=pub.acked,
                inflight=pub.inflight,
                refused_total=pub.refused,
            )
        with self._lock:
            details["config_error"] = self.config_error
            details["config_revision"] = self.config_revision
        return details

    def online(self, event: str = "heartbeat", *, time: datetime | None = None) -> bytes:
        """Encode a ``device.online`` event with the current figures."""
        cfg = self._config()
        return encode(
            DeviceOnlineEvent.create(
                site=cfg.site,
                device=cfg.device,
                time=time or self.clock.now(),
                agent_version=AGENT_VERSION,
                reason=event,
                drivers=tuple(sorted({s.driver for s in cfg.sensors})),
                config_hash=cfg.config_hash(),
                details=self.details(event),
            )
        )

    def offline(self, reason: str) -> bytes:
        """Encode a ``device.offline`` event (last will or goodbye)."""
        cfg = self._config()
        return encode(
            DeviceOfflineEvent.create(
                site=cfg.site,
                device=cfg.device,
                time=self.clock.now(),
                agent_version=AGENT_VERSION,
                reason=reason,
                drivers=tuple(sorted({s.driver for s in cfg.sensors})),
                config_hash=cfg.config_hash(),
            )
        )
