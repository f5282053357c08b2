"""Running the gateway: rules reloaded in place, clusters of processes, supervision.

- :mod:`~gateway.runtime.rules`: :class:`RulesWatcher`, the alarm rules reloaded on
  change or SIGHUP.
- :mod:`~gateway.runtime.recovery`: the Bytewax recovery folder, prepared and checked.
- :mod:`~gateway.runtime.cluster`: ``sensorgate cluster``, N processes as one cluster;
  :mod:`~gateway.runtime.addresses` its addresses.
- :mod:`~gateway.runtime.supervisor`: all processes of a cluster run together or none;
  :mod:`~gateway.runtime.child` one process, :mod:`~gateway.runtime.outcome` how it went.

May import ``contract``, ``dataflows``, :mod:`gateway.app`, :mod:`gateway.settings`,
:mod:`gateway.statedir` and
:mod:`gateway.observability`; never the command line, the tools or the benchmarks.
"""
