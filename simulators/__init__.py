"""SensorGate simulators: try SensorGate without hardware, test alerting, load-test.

Modules, one per concern:

- :mod:`simulators.signals`: signal models (temperature, humidity, pressure,
  vibration, power, current, battery, door) with documented parameters and a seed;
- :mod:`simulators.anomalies`: anomaly injection, scheduled or random;
- :mod:`simulators.labels`: ground-truth labels (JSON lines, MQTT labels topic);
- :mod:`simulators.timebase`: real-time, accelerated and as-fast-as-possible time;
- :mod:`simulators.fleet`: many devices driven from one thread;
- :mod:`simulators.scenario`: TOML scenario files (``simulators/scenarios/``);
- :mod:`simulators.csv_replay`: replay any timestamped CSV as a device;
- :mod:`simulators.loadgen`: a load generator for benchmarks (:func:`run_loadgen`);
- :mod:`simulators.wire` and :mod:`simulators.links`: fast, contract-valid event
  rendering and publishing through the edge's MQTT link;
- :mod:`simulators.cli`: the ``simulate``, ``csv-replay`` and ``loadgen`` commands;
- :mod:`simulators.demo`: the demo fleet of ``sensorgate up``.
"""
