"""The chaos schedule: what is broken when, and for how long.

:func:`build_schedule` places five faults over a run of ``duration_s`` seconds, at fixed
fractions of it, so a 10-minute run and a compressed 2-minute one break the same things
in the same order::

    15 %  SIGKILL the gateway; restart it at once (recovery on)
    25 %  stop influxd for ``influx_down_s`` (60 s); restart it on its port and data
    55 %  SIGKILL an edge agent; restart it with the same outbox after ``edge_down_s``
    70 %  stop the broker for ``broker_down_s`` (20 s); restart it on its port, persistence on
    88 %  SIGKILL the gateway again

Faults never overlap except where stated (the edge kill may fall inside another outage);
a run too short to hold them is refused with the shortest one that does.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Action", "ChaosEvent", "build_schedule"]


class Action(StrEnum):
    """A fault."""

    KILL_GATEWAY = "kill_gateway"
    STOP_INFLUXD = "stop_influxd"
    KILL_EDGE = "kill_edge"
    STOP_BROKER = "stop_broker"


@dataclass(frozen=True, slots=True)
class ChaosEvent:
    """One fault: ``action`` at ``at_s`` seconds into the run, undone ``down_s`` later."""

    at_s: float
    action: Action
    down_s: float = 0.0

    @property
    def end_s(self) -> float:
        """When the fault is undone."""
        return self.at_s + self.down_s


_PLAN = (
    (0.15, Action.KILL_GATEWAY),
    (0.25, Action.STOP_INFLUXD),
    (0.55, Action.KILL_EDGE),
    (0.70, Action.STOP_BROKER),
    (0.88, Action.KILL_GATEWAY),
)


def build_schedule(
    duration_s: float,
    *,
    influx_down_s: float = 60.0,
    broker_down_s: float = 20.0,
    edge_down_s: float = 5.0,
    gateway_down_s: float = 0.0,
    settle_s: float = 10.0,
) -> list[ChaosEvent]:
    """Return the faults of a run of ``duration_s`` seconds, in time order.

    ``settle_s`` is the least time between one fault's end and the next serious fault
    (and before the end of the run). Raise ValueError when the run is too short.
    """
    downs = {
        Action.KILL_GATEWAY: gateway_down_s,
        Action.STOP_INFLUXD: influx_down_s,
        Action.KILL_EDGE: edge_down_s,
        Action.STOP_BROKER: broker_down_s,
    }
    events = [ChaosEvent(round(f * duration_s, 1), a, downs[a]) for f, a in _PLAN]
    serious = [e for e in events if e.action is not Action.KILL_EDGE]
    for before, after in itertools.pairwise(serious):
        if before.end_s + settle_s > after.at_s:
            raise ValueError(_too_short(duration_s, before, after))
    last = max(e.end_s for e in events)
    if last + settle_s > duration_s:
        raise ValueError(
            f"a run of {duration_s:.0f} s ends {last + settle_s - duration_s:.0f} s too early"
            f" for its last fault to be undone and settle"
        )
    return events


def _too_short(duration_s: float, before: ChaosEvent, after: ChaosEvent) -> str:
    return (
        f"a run of {duration_s:.0f} s cannot hold {before.action.value} ({before.down_s:.0f} s"
        f" down, from {before.at_s:.0f} s) before {after.action.value} at {after.at_s:.0f} s;"
        " give more minutes or shorter outages"
    )
