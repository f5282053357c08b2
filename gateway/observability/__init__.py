"""What the gateway says about itself: metrics, readiness, the HTTP endpoint, logs.

- :mod:`~gateway.observability.metrics`: :class:`GatewayMetrics` (Prometheus).
- :mod:`~gateway.observability.health`: readiness (broker and InfluxDB reachable).
- :mod:`~gateway.observability.http`: ``/metrics`` and ``/healthz`` from a thread.
- :mod:`~gateway.observability.logs`: plain-text or JSON logging for the command line.

May import the standard library, Prometheus, httpx and (for its statistics type only)
:mod:`gateway.influx`; nothing else of the project.
"""
