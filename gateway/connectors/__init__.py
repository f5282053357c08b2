"""Where data enters and leaves the running gateway.

- :mod:`~gateway.connectors.mqtt_source`: the Bytewax MQTT source (paho, at-least-once).
- :mod:`~gateway.connectors.aio_mqtt`: the asyncio MQTT client (aiomqtt) for watchers.
- :mod:`~gateway.connectors.sinks`: points to InfluxDB, dead letters, operator commands.
- :mod:`~gateway.connectors.alarm_sink`: alarm events to MQTT and InfluxDB.
- :mod:`~gateway.connectors.alarm_summary`: the retained summary of active alarms.
- :mod:`~gateway.connectors.ha_sink`: Home Assistant discovery and latest aggregates.

May import ``contract``, ``dataflows``, ``edge.mqtt`` (the paho link),
:mod:`gateway.settings`, :mod:`gateway.influx` and :mod:`gateway.observability`; never
the command line, the tools (``ops``, ``bench``) or the local stack.
"""
