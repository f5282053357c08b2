"""InfluxDB: line protocol, writers (v1 HTTP API, v2 via influxdb-client, v3), queries, setup.

- :mod:`~gateway.influx.encoder`: columnar batches to line protocol (the points path).
- :mod:`~gateway.influx.lineprotocol`: per-event lines (alarms, dead letters).
- :mod:`~gateway.influx.writer`: one request at a time, with retries (v1, v3; v2 through
  ``influxdb-client`` in :mod:`~gateway.influx.writer_v2`).
- :mod:`~gateway.influx.pipeline`: submit/flush with a durable-through mark, spill; its
  parts: :mod:`~gateway.influx.submissions` (queue and marks),
  :mod:`~gateway.influx.spillway` (into the spill and drained back),
  :mod:`~gateway.influx.refused` (the refused points of a body, by bisection).
- :mod:`~gateway.influx.resilient`: the same, synchronous (``write`` returns durable).
- :mod:`~gateway.influx.spill`: the on-disk buffer for outages.
- :mod:`~gateway.influx.reroute`: a spill from before retention policies, sorted by policy.
- :mod:`~gateway.influx.query`: InfluxQL.
- :mod:`~gateway.influx.layout`: measurement -> retention policy and qualified InfluxQL name.
- :mod:`~gateway.influx.retention`: the retention policies a 1.x server needs (a plan).
- :mod:`~gateway.influx.setup`: ``sensorgate influx setup`` (database, retention policies,
  bucket, DBRP mappings); the gateway's start runs it on 1.x. Its 2.x steps are
  :mod:`~gateway.influx.setup_v2`; the report and HTTP calls, :mod:`~gateway.influx.setup_steps`.

May import ``contract``, ``dataflows`` (column and aggregate types),
:mod:`gateway.settings`, :mod:`gateway.statedir` and, for dead letters of refused
points, ``edge.mqtt``; nothing else of the gateway.
"""
