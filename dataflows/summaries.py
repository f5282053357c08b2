"""The active alarms of each device, re-published (retained) after every change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contract import AlarmData, AlarmState
from contract.alarms import AlarmEvent

__all__ = ["ActiveAlarms", "ActiveSummaries"]


@dataclass(frozen=True, slots=True)
class ActiveAlarms:
    """The active (raised or acknowledged, not cleared) alarms of one device, after a change.

    The alarm sink publishes it retained, so a dashboard that connects late sees the
    current state without replaying the event history.
    """

    site: str
    device: str
    alarms: tuple[AlarmData, ...]


class ActiveSummaries:
    """Keeps each device's active alarms; says what changed."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self._active: dict[str, dict[str, dict[str, Any]]] = {}
        """``site/device`` -> alarm id -> AlarmData as JSON-able data."""
        if state is not None:
            self._active = {key: dict(alarms) for key, alarms in state.items()}

    def after(self, alarms: list[AlarmEvent]) -> list[AlarmEvent | ActiveAlarms]:
        """Return ``alarms`` followed by the new summary of each device they changed."""
        if not alarms:
            return []
        changed: dict[str, tuple[str, str]] = {}
        for event in alarms:
            data = event.data
            key = f"{data.site}/{data.device}"
            active = self._active.setdefault(key, {})
            if data.state is AlarmState.CLEARED:
                active.pop(data.alarm_id, None)
            else:
                active[data.alarm_id] = data.model_dump(mode="json")
            changed[key] = (data.site, data.device)
        out: list[AlarmEvent | ActiveAlarms] = list(alarms)
        for key, (site, device) in changed.items():
            summary = tuple(AlarmData.model_validate(d) for d in self._active[key].values())
            out.append(ActiveAlarms(site, device, summary))
            if not self._active[key]:
                del self._active[key]
        return out

    def snapshot(self) -> dict[str, Any]:
        """Return the active alarms as plain data."""
        return {key: dict(alarms) for key, alarms in self._active.items()}
