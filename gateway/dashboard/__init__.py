"""The built-in web dashboard: fleet, active alarms, device charts, live updates.

:class:`~gateway.dashboard.server.Dashboard` serves the page and a small JSON/SSE API
on its own port; the assets in ``static/`` ship with the package (no CDN).

May import ``contract``, ``edge.mqtt``, :mod:`gateway.settings`, :mod:`gateway.views`
(every query it answers), :mod:`gateway.influx`, :mod:`gateway.connectors` and
:mod:`gateway.ops.acknowledge` (the acknowledge command); never the command line or
the benchmarks.
"""
