"""The live alarm board: active alarms from InfluxDB, kept fresh by MQTT alarm events.

InfluxDB is the record; MQTT alarm events arrive first. The board takes whichever
event of an alarm is newest (by event time), so a poll of InfluxDB that lags the
broker never brings back an alarm that MQTT already cleared.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from contract.alarms import AlarmEvent, Severity
from gateway.views.explain import why
from gateway.views.rows import utc_iso

__all__ = ["AlarmBoard"]


def _rank(severity: str) -> int:
    try:
        return Severity(severity).rank
    except ValueError:
        return -1


class AlarmBoard:
    """Active alarms by id, with the event time of the latest event seen for each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[datetime, dict[str, Any] | None]] = {}
        """alarm_id -> (event time, JSON doc, or None once cleared)."""
        self.version = 0

    def apply_event(self, event: AlarmEvent) -> bool:
        """Take one MQTT alarm event; return whether the board changed."""
        d = event.data
        detail = None if d.detail is None else d.detail.model_dump(exclude_none=True)
        doc = {
            "time": utc_iso(d.event_time),
            "alarm_id": d.alarm_id,
            "site": d.site,
            "device": d.device,
            "sensor": d.sensor,
            "metric": d.metric,
            "rule": d.rule,
            "severity": d.severity.value,
            "state": d.state.value,
            "value": d.value,
            "threshold": d.threshold,
            "message": d.message,
            "kind": d.kind,
            "detail": detail,
            "folded_raises": d.folded_raises,
            "rate_limited": d.rate_limited,
        }
        doc["why"] = why(detail, d.folded_raises, d.rate_limited)
        return self._put(d.alarm_id, d.event_time, None if d.state.value == "cleared" else doc)

    def apply_snapshot(self, rows: list[dict[str, Any]], *, grace_s: float = 30.0) -> bool:
        """Take the active alarms read from InfluxDB; return whether the board changed.

        An alarm that the snapshot no longer lists is dropped unless an MQTT event
        about it is younger than ``grace_s`` (InfluxDB may not have it yet).
        """
        changed = False
        now = datetime.now(UTC)
        listed = set()
        for row in rows:
            when = datetime.fromisoformat(row["time"].replace("Z", "+00:00"))
            listed.add(row["alarm_id"])
            changed |= self._put(row["alarm_id"], when, row)
        with self._lock:
            for alarm_id, (when, doc) in list(self._latest.items()):
                if alarm_id in listed or (now - when).total_seconds() < grace_s:
                    continue
                del self._latest[alarm_id]
                if doc is not None:
                    changed = True
            if changed:
                self.version += 1
        return changed

    def _put(self, alarm_id: str, when: datetime, doc: dict[str, Any] | None) -> bool:
        with self._lock:
            old = self._latest.get(alarm_id)
            if old is not None and old[0] > when:
                return False
            if old is not None and old[1] == doc:
                return False
            self._latest[alarm_id] = (when, doc)
            self.version += 1
            return True

    def active(self) -> list[dict[str, Any]]:
        """Active (and acknowledged) alarms, most severe then newest first."""
        with self._lock:
            docs = [doc for _, doc in self._latest.values() if doc is not None]
        docs.sort(key=lambda d: d["time"], reverse=True)
        docs.sort(key=lambda d: _rank(d["severity"]), reverse=True)
        return docs
