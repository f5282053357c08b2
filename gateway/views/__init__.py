"""Read-side views of the stored data: alarms, fleet status, readings and aggregates.

The CLI (``sensorgate alerts|devices|query``), the web dashboard and the tests use
:class:`~gateway.views.queries.Views`; every statement is InfluxQL, which InfluxDB 1.x,
2.x (compatibility API) and 3.x answer.

- :mod:`~gateway.views.queries`: :class:`~gateway.views.queries.Views`, the statements.
- :mod:`~gateway.views.clauses`: user input checked and quoted into InfluxQL pieces.
- :mod:`~gateway.views.rows`: what the views return, and the alarm filter.
- :mod:`~gateway.views.bands`, :mod:`~gateway.views.explain`: expected bands, ``why``.
- :mod:`~gateway.views.alerts_watch`: ``alerts --watch`` over MQTT.
- :mod:`~gateway.views.fake`: a scripted query runner for tests.

May import ``contract``, :mod:`gateway.settings`, :mod:`gateway.influx` (the query
client, quoting, the storage layout) and :mod:`gateway.connectors` (the MQTT client of
``alerts --watch``); never the dashboard, the command line or the benchmarks.
"""

from gateway.views.clauses import ViewInputError, choose_interval
from gateway.views.queries import Views
from gateway.views.rows import AlarmFilter, AlarmRow, DeviceStatus, SeriesPoint

__all__ = [
    "AlarmFilter",
    "AlarmRow",
    "DeviceStatus",
    "SeriesPoint",
    "ViewInputError",
    "Views",
    "choose_interval",
]
