"""SensorGate gateway package: MQTT in, Bytewax in the middle, InfluxDB and MQTT out.

At the root: :mod:`~gateway.app` (the composition root: settings in, a runnable
dataflow out), :mod:`~gateway.settings` (the one settings object, one module per
section) and :mod:`~gateway.statedir` (private state folders). By concern:

- :mod:`gateway.connectors`: MQTT source and sinks (points, dead letters, alarms, HA).
- :mod:`gateway.influx`: line protocol, writers, spill, queries, setup, rejections.
- :mod:`gateway.observability`: metrics, health, the ``/metrics`` endpoint, logging.
- :mod:`gateway.runtime`: rules reload, clusters of gateway processes, supervision.
- :mod:`gateway.views` and :mod:`gateway.dashboard`: the read side.
- :mod:`gateway.ops`: operator and offline tools (acknowledge, replay, detect, evaluate).
- :mod:`gateway.localstack`: mosquitto and influxd as child processes, ``sensorgate up``.
- :mod:`gateway.cli`: the ``sensorgate`` command line.
- :mod:`gateway.bench`, :mod:`gateway.chaos`, :mod:`gateway.fuzz`: measurements and
  hostile runs against real processes.

The gateway may import ``contract``, ``dataflows``, ``edge`` and ``simulators``; none
of them imports the gateway (``tests/test_layering.py`` checks it).
"""
