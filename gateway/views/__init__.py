"""Read-side views of the stored data: alarms, fleet status, readings and aggregates.

The CLI (``sensorgate alerts|devices|query``), the web dashboard and the tests use
:class:`~gateway.views.queries.Views`; every statement is InfluxQL, which InfluxDB 1.x,
2.x (compatibility API) and 3.x answer.
"""

from gateway.views.queries import (
    AlarmFilter,
    AlarmRow,
    DeviceStatus,
    SeriesPoint,
    Views,
    choose_interval,
)

__all__ = [
    "AlarmFilter",
    "AlarmRow",
    "DeviceStatus",
    "SeriesPoint",
    "Views",
    "choose_interval",
]
