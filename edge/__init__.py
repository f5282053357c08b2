"""SensorGate edge agent: sensor drivers, sampling, batching, durable outbox, MQTT.

Installs with the ``edge`` extra only (paho-mqtt, pydantic,
smbus2). Start with :mod:`edge.agent`; docs/edge.md describes the design and the
durability trade-offs.
"""
