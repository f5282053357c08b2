"""``sensorgate bench``: the gateway side by side with the tools a user would pick instead.

One fixed workload (:mod:`.workload`: by default 1,000 devices, 50 readings per QoS 1
message, a burst of 1 M readings), published from its own process
(:mod:`.publisher`) to each peer in turn (:mod:`.peers`: SensorGate with and without
detection, Node-RED (:mod:`.nodered`), a naive script (:mod:`.naive_peer`), and
influxd's own ceiling (:mod:`.influx_ceiling`)), each against fresh mosquitto and
influxd. :mod:`.measure` samples CPU, RSS and influxd's write statistics until the burst
is stored, :mod:`.storage` reads the gateway's own counters and latency histograms,
:mod:`.runner` runs the rounds, :mod:`.round_figures` turns what a burst measured into
a round's figures, :mod:`.results` summarizes them and :mod:`.report` prints the table
and writes the JSON and the chart. ``docs/benchmarks.md`` describes the method and the
figures.

Shared by every ``bench*`` command: :mod:`.rounds` (fresh services per round, a
failure recorded in its round, the burst until stored), :mod:`.render` (figures,
spreads, whisker charts, the run-print-save sequence) and :mod:`.cli_options` (the
common options). The other benchmarks: ``bench-adapters`` (:mod:`.adapters`),
``bench-stop`` (:mod:`.stop`), ``bench-cluster`` (:mod:`.scaling`), ``bench-alarms``
(:mod:`.alarms`), ``bench-fleet`` (:mod:`.fleet`), ``bench-dashboard``
(:mod:`.dashboard_fanout`) and the encoder (:mod:`.encode`).

Modules are imported on use: importing this package costs nothing.
"""
