"""The ``sensorgate`` command line (console script ``gateway.cli:main``).

- :mod:`~gateway.cli.entry`: the parser, the plugin list, ``main`` and the one
  error-to-exit-code mapping (``run_command``).
- :mod:`~gateway.cli.stack`: ``up`` and ``services``.
- :mod:`~gateway.cli.run`: ``gateway run`` (and ``gateway forget-sessions``).
- :mod:`~gateway.cli.bench`: ``bench`` and ``bench-stop``.
- :mod:`~gateway.cli.views`: ``alerts``, ``devices``, ``query`` (tables drawn by
  :mod:`~gateway.cli.tables`).
- :mod:`~gateway.cli.dashboard`: ``dashboard``, ``bench-dashboard`` and the
  ``--dashboard-*`` options of ``gateway run``.
- :mod:`~gateway.cli.influx_args`: the ``--influx-url``/``--database`` options they share.
- :mod:`~gateway.cli.detection`: ``detect`` and ``evaluate``.
- :mod:`~gateway.cli.config`: ``config check`` and ``config example``.

Other packages add their own commands through ``register(subparsers)`` (the plugin
list in :mod:`~gateway.cli.entry`). The command line may import any part of the
gateway, inside the commands so that an edge-only install still starts; no other part
of the gateway imports it.
"""

from gateway.cli.entry import build_parser, main, run_command

__all__ = ["build_parser", "main", "run_command"]
