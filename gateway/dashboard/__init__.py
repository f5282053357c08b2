"""The built-in web dashboard: fleet, active alarms, device charts, live updates.

:class:`~gateway.dashboard.server.Dashboard` serves the page and a small JSON/SSE API
on its own port; the assets in ``static/`` ship with the package (no CDN).
"""
