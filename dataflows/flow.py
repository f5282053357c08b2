"""The gateway dataflow builder.

The builder takes its source and sinks as arguments, so tests run it with Bytewax's
``TestingSource``/``TestingSink`` and production with MQTT and InfluxDB.
"""

from __future__ import annotations

from typing import TypeGuard, cast

from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from contract import DeadLetterEvent
from dataflows.ingest import Accepted, Ingestor, RawMessage, Rejected

__all__ = ["build_flow"]


def build_flow(
    source: Source[RawMessage],
    *,
    ingestor: Ingestor,
    readings_sink: Sink[Accepted],
    deadletter_sink: Sink[DeadLetterEvent],
    gateway_id: str = "gateway",
    flow_id: str = "sensorgate",
) -> Dataflow:
    """Build the flow: MQTT messages -> validated telemetry -> sinks; rejects -> dead letters."""
    flow = Dataflow(flow_id)
    raw = op.input("mqtt_in", flow, source)
    checked = op.map("decode", raw, ingestor.accept)
    split = op.branch("valid", checked, _is_accepted)
    op.output("readings_out", split.trues, readings_sink)
    letters = op.map("deadletter", split.falses, lambda r: cast(Rejected, r).to_event(gateway_id))
    op.output("deadletters_out", letters, deadletter_sink)
    return flow


def _is_accepted(item: Accepted | Rejected) -> TypeGuard[Accepted]:
    return isinstance(item, Accepted)
