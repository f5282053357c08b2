"""``sensorgate chaos``: load through edge agents while processes are killed and stopped.

:mod:`.run` drives a run in phases; :mod:`.roles` starts the processes (mosquitto,
influxd, the gateway, an edge agent, a simulated fleet :mod:`.fleet`), :mod:`.schedule`
says when which fault comes and :mod:`.faults` injects it, :mod:`.watch` samples RSS,
spill and a dead gateway, :mod:`.counting` drains the outboxes and counts InfluxDB per
device, :mod:`.accounting` turns that into lost and duplicated readings, and :mod:`.cli`
is the command. It builds on ``gateway.bench`` (processes, influxd) and
``gateway.localstack``; nothing imports it but the CLI.
"""
