"""SensorGate simulators: try SensorGate without hardware, test alerting, load-test.

Modules, one per concern:

- :mod:`simulators.signals`: signal models (temperature, humidity, pressure,
  vibration, power, current, battery, door) with documented parameters and a seed;
  their parameter models in :mod:`simulators.signal_params`;
- :mod:`simulators.anomalies`: anomaly injection, scheduled or random;
- :mod:`simulators.labels`: ground-truth labels (JSON lines, MQTT labels topic);
- :mod:`simulators.timebase`: real-time, accelerated and as-fast-as-possible time;
- :mod:`simulators.sim_device`: one simulated device (samplers, anomalies, sequence);
- :mod:`simulators.fleet` and :mod:`simulators.fleet_report`: many devices driven
  from one thread, and what a run did;
- :mod:`simulators.multiplexed`: one MQTT connection per device, served from one
  thread (the thread runner of ``--connections per-device``);
- :mod:`simulators.aio_fleet` (with ``aio_device``, ``aio_link``, ``aio_shared``,
  ``aio_heap``, ``aio_labels``, ``aio_report``): one aiomqtt connection per device
  on one event loop (the asyncio runner);
- :mod:`simulators.scenario`: TOML scenario files (``simulators/scenarios/``);
- :mod:`simulators.csv_table` and :mod:`simulators.csv_replay`: read any timestamped
  CSV, and replay it as a device;
- :mod:`simulators.loadgen`: a load generator for benchmarks (:func:`run_loadgen`);
- :mod:`simulators.wire` and :mod:`simulators.links`: fast, contract-valid event
  rendering and publishing through the edge's MQTT link;
- :mod:`simulators.dialects` (and :mod:`simulators.sparkplug_wire`): the fleet's
  readings as Zigbee2MQTT, Tasmota, Shelly, Home Assistant, Sparkplug B or Telegraf
  devices would publish them;
- :mod:`simulators.cli`: the ``simulate``, ``csv-replay`` and ``loadgen`` commands
  (their options in :mod:`simulators.cli.options`);
- :mod:`simulators.demo`: the demo fleet of ``sensorgate up``.
"""
