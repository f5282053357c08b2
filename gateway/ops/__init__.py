"""Operator and offline tools: commands to a running gateway, and detection on recorded data.

- :mod:`~gateway.ops.acknowledge`: ``sensorgate alarms ack`` (a command over MQTT).
- :mod:`~gateway.ops.sessions`: ``sensorgate gateway forget-sessions``.
- :mod:`~gateway.ops.replay`: ``sensorgate replay`` (backtest over stored readings).
- :mod:`~gateway.ops.detect`: the detection engine over recorded telemetry
  (:mod:`~gateway.ops.columns` builds the engine's columns for it and for replay).
- :mod:`~gateway.ops.evaluate` (SKAB and simulated labels, scored by
  :mod:`~gateway.ops.scores`), :mod:`~gateway.ops.evaluate_nab` (NAB, scored by
  :mod:`~gateway.ops.nab_score`), :mod:`~gateway.ops.evaluate_chart`: detection
  against labelled data.

May import ``contract``, ``dataflows``, ``edge.mqtt``, ``simulators`` (recorded and
simulated data), :mod:`gateway.settings`, :mod:`gateway.influx` and
:mod:`gateway.connectors`; never the command line, the benchmarks or the local stack.
"""
