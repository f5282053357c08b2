"""The MQTT topic scheme: ``{prefix}/{site}/{device}/{kind}``.

Build topics with :class:`TopicScheme` and parse them back with
:meth:`TopicScheme.parse`; both raise :class:`~contract.errors.TopicError` with a
message that says what was expected and what arrived.

Below a device's topics the gateway also publishes, never subscribes to:

* ``{prefix}/{site}/{device}/alarms/active``: the device's active alarms (retained);
* ``{prefix}/{site}/{device}/aggregates/{sensor}/{metric}``: a series' latest window
  aggregate (retained; only with Home Assistant discovery on, docs/adapters.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from contract.errors import TopicError
from contract.ids import check_id

__all__ = [
    "ACTIVE_SEGMENT",
    "AGGREGATES_SEGMENT",
    "DEFAULT_PREFIX",
    "DeviceTopic",
    "TopicKind",
    "TopicScheme",
]

DEFAULT_PREFIX = "sg/v1"
GATEWAY_SEGMENT = "_gateway"
ACTIVE_SEGMENT = "active"
"""Last level of ``{prefix}/{site}/{device}/alarms/active``."""
AGGREGATES_SEGMENT = "aggregates"
"""The level after the device in ``{prefix}/{site}/{device}/aggregates/{sensor}/{metric}``."""


class TopicKind(StrEnum):
    """The last level of a device topic."""

    TELEMETRY = "telemetry"
    STATUS = "status"
    ALARMS = "alarms"
    CONFIG = "config"
    COMMANDS = "commands"


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed device topic."""

    site: str
    device: str
    kind: TopicKind


@dataclass(frozen=True, slots=True)
class TopicScheme:
    """Builds and parses the topics under one ``prefix`` (default ``sg/v1``)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        levels = self.prefix.split("/")
        for level in levels:
            check_id("topic prefix level", level)

    @property
    def _depth(self) -> int:
        return self.prefix.count("/") + 1

    def device(self, site: str, device: str, kind: TopicKind) -> str:
        """Return the topic of ``kind`` for one device."""
        check_id("site", site)
        check_id("device", device)
        return f"{self.prefix}/{site}/{device}/{TopicKind(kind).value}"

    def telemetry(self, site: str, device: str) -> str:
        """Return the telemetry topic of one device."""
        return self.device(site, device, TopicKind.TELEMETRY)

    def status(self, site: str, device: str) -> str:
        """Return the (retained) status topic of one device."""
        return self.device(site, device, TopicKind.STATUS)

    def alarms(self, site: str, device: str) -> str:
        """Return the alarm topic of one device."""
        return self.device(site, device, TopicKind.ALARMS)

    def config(self, site: str, device: str) -> str:
        """Return the (retained) desired-config topic of one device."""
        return self.device(site, device, TopicKind.CONFIG)

    def alarms_active(self, site: str, device: str) -> str:
        """Return the (retained) topic of one device's active alarms."""
        return f"{self.alarms(site, device)}/{ACTIVE_SEGMENT}"

    def aggregates(self, site: str, device: str, sensor: str, metric: str) -> str:
        """Return the (retained) topic of one series' latest window aggregate."""
        check_id("site", site)
        check_id("device", device)
        check_id("sensor", sensor)
        check_id("metric", metric)
        return f"{self.prefix}/{site}/{device}/{AGGREGATES_SEGMENT}/{sensor}/{metric}"

    @property
    def deadletter(self) -> str:
        """The topic the gateway publishes dead letters on."""
        return f"{self.prefix}/{GATEWAY_SEGMENT}/deadletter"

    def subscription(self, kind: TopicKind, *, share_group: str | None = None) -> str:
        """Return the filter for ``kind`` of every device, optionally as a shared subscription."""
        topic_filter = f"{self.prefix}/+/+/{TopicKind(kind).value}"
        if share_group is None:
            return topic_filter
        check_id("share group", share_group)
        return f"$share/{share_group}/{topic_filter}"

    def parse(self, topic: str) -> DeviceTopic:
        """Parse a device topic; raise :class:`TopicError` if it is not one of ours."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            raise TopicError(f"expected a topic under {head!r}; got {topic!r}")
        levels = topic[len(head) :].split("/")
        if len(levels) != 3:
            raise TopicError(
                f"expected {head}{{site}}/{{device}}/{{kind}}; got {topic!r}"
                f" ({len(levels)} levels after the prefix)"
            )
        site, device, kind = levels
        try:
            parsed_kind = TopicKind(kind)
        except ValueError:
            known = ", ".join(k.value for k in TopicKind)
            raise TopicError(
                f"unknown topic kind {kind!r} in {topic!r}; expected one of {known}"
            ) from None
        return DeviceTopic(check_id("site", site), check_id("device", device), parsed_kind)
