"""The local stack: mosquitto, influxd (and VictoriaMetrics) as child processes.

- :mod:`~gateway.localstack.services`: start and stop the services on free ports
  (used by ``sensorgate up``, the tests and the benchmarks).
- :mod:`~gateway.localstack.up`: ``sensorgate up``, the whole stack with a demo fleet.

May import ``contract``, ``edge.mqtt``, ``simulators`` (the demo fleet),
:mod:`gateway.settings` and :mod:`gateway.influx`; the gateway itself runs as a child
process (``python -m gateway.cli``), never imported.
"""
