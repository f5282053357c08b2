"""``sensorgate fuzz``: hostile messages through a real gateway and broker, accounted for.

:mod:`.corpus` generates the seeded corpus and its expected verdicts (the hostile kinds
are made in :mod:`.hostile`), :mod:`.run` publishes it and counts what the gateway did,
:mod:`.cli` is the command. It builds on ``contract``, ``gateway.bench`` (processes,
influxd) and ``gateway.localstack``; nothing imports it but the CLI and the tests.
"""
