"""``sensorgate edge bench``: the agent's footprint, throughput and backlog drain.

    sensorgate edge bench [--json] [--out FILE] [--host H --port P] [--quick]

Three phases, each against a real MQTT broker on this machine (the bench starts its
own mosquitto unless ``--port`` names one):

1. **footprint** -- the agent runs as a separate process (``python -m edge.cli run``)
   with 10 simulated sensors at 1 Hz and the default batching, outbox and fsync
   policy; after a warm-up its RSS is sampled every second and its CPU time is
   measured over ``--footprint-s`` (psutil when installed, else ``/proc``).
   Targets: RSS < 40 MB, CPU < 2 % of one core.
2. **unconstrained** -- the same agent process with simulated sensors sampled as fast
   as it can (offered load far above what it can ship), ``max_rate = 0``: the
   readings per second the broker PUBACKed (the agent's own ``acked_total`` from
   its status heartbeats, times the readings per event) over ``--unconstrained-s``.
   With the offered load above capacity this is the pipeline's ceiling -- sampling,
   batching, the fsynced outbox insert, publish, PUBACK, delete -- all in one
   process. Target: >= 20,000 readings/s.
3. **backlog** -- 10 minutes x 100 readings/s of telemetry stored while the broker is
   down. The outbox is pre-filled by the agent's own code (the real ``Agent`` with
   sampler, batcher and outbox, driven by a fake clock through 600 simulated
   seconds, the link down) instead of waiting 10 real minutes; then the agent
   process starts on that outbox with the broker still down and keeps sampling 100
   readings/s, the broker starts, and the time until the outbox is back to its
   steady state gives the drain rate. Run twice: with the default ``max_rate`` (50
   events/s, the pace a device drains at out of the box) and with ``max_rate = 0``.
   With ``--port`` (a broker the bench cannot stop) the agent starts with the broker
   up and the clock starts at the agent's start.

Nothing here is a test; the figures depend on the machine.

Modules: :mod:`~edge.bench.cli` (the command and the report),
:mod:`~edge.bench.phases` (outbox, footprint, unconstrained), :mod:`~edge.bench.backlog`
(the outage and the drain), :mod:`~edge.bench.agentproc` (the agent as a process),
:mod:`~edge.bench.probes` (the broker, a status subscriber, a process meter). Only the
standard library is imported at module level: ``sensorgate edge`` registers the command
without paho, psutil or pydantic.
"""

from __future__ import annotations

from edge.bench.agentproc import agent_config, agent_process
from edge.bench.backlog import backlog, prefill
from edge.bench.cli import add_arguments, cmd_bench, main, run_bench, table
from edge.bench.phases import footprint, outbox_inserts, unconstrained
from edge.bench.probes import Broker, ProcessMeter, StatusWatch

__all__ = [
    "Broker",
    "ProcessMeter",
    "StatusWatch",
    "add_arguments",
    "agent_config",
    "agent_process",
    "backlog",
    "cmd_bench",
    "footprint",
    "main",
    "outbox_inserts",
    "prefill",
    "run_bench",
    "table",
    "unconstrained",
]
