"""Site-level pattern rules: one detector over the telemetry of every device of a site.

Site-level patterns need every device of a site in one place: the flow keys a second
stateful step by site and feeds it the same telemetry; :class:`SiteDetector` does the
rest. Its alarms are about the pseudo device :data:`SITE_DEVICE`.
"""

from __future__ import annotations

from typing import Any

from contract import TelemetryEvent
from contract.alarms import AlarmEvent
from dataflows.alarms import Cause
from dataflows.rule_slots import SlotEngine, us_of
from dataflows.rules import RuleSet

__all__ = ["SITE_DEVICE", "SiteDetector"]

SITE_DEVICE = "_site"
"""The device id of site-level alarms."""


class SiteDetector(SlotEngine):
    """Site-scope pattern rules over the telemetry of every device of one site.

    Key it by site in the flow and feed it each device's deduplicated telemetry. The
    members of its conditions are ``device/sensor/metric``; its alarms are about the
    device :data:`SITE_DEVICE`.
    """

    def __init__(self, site: str, rules: RuleSet, *, state: dict[str, Any] | None = None) -> None:
        super().__init__(site, SITE_DEVICE, rules)
        if state is not None:
            self.restore(state)

    def on_readings(self, item: Any) -> list[AlarmEvent]:
        """Take one device's fresh readings (a :class:`~dataflows.shard.SiteReadings`)."""
        out: list[AlarmEvent] = []
        rules = self.rules.site_patterns(self.site)
        if not rules:
            return self.flush(out)
        for sensor, metric, value, t in item.readings:
            member = f"{item.device}/{sensor}/{metric}"
            cause = Cause(item.event_id, member, item.traceparent)
            for rule in rules:
                self._feed_pattern(rule, t, member, value, cause, out)
        return self.flush(out)

    def on_telemetry(self, event: TelemetryEvent) -> list[AlarmEvent]:
        """Take one telemetry event of a device of this site."""
        out: list[AlarmEvent] = []
        rules = self.rules.site_patterns(self.site)
        if not rules:
            return self.flush(out)
        device = event.data.device
        for reading in sorted(event.data.readings, key=lambda r: r.time):
            if reading.value is None:
                continue
            t = us_of(reading.time)
            member = f"{device}/{reading.sensor}/{reading.metric}"
            cause = Cause(event.id, member, event.traceparent)
            for rule in rules:
                self._feed_pattern(rule, t, member, reading.value, cause, out)
        return self.flush(out)
