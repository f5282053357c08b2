"""The gateway dataflow builder.

The builder takes its source and sinks as arguments, so tests run it with Bytewax's
``TestingSource``/``TestingSink`` and production with MQTT and InfluxDB::

    MQTT messages ─▶ decode + validate ─┬─▶ dead letters
                                        ▼
                          key by device ─▶ device step (dedupe, event-time windows,
                                           late readings) ─▶ points: fresh telemetry,
                                                             aggregates, late readings
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeGuard, cast

from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from contract import DeadLetterEvent
from dataflows.device import Clock, DeviceOutput, DeviceProcessor, FleetClock, StreamConfig
from dataflows.ingest import Accepted, Ingestor, RawMessage, Rejected
from dataflows.observer import NullObserver, Observer

__all__ = ["build_flow"]


class _DeviceLogic(StatefulBatchLogic[Accepted, DeviceOutput, dict[str, Any]]):
    """Adapts :class:`DeviceProcessor` to Bytewax's stateful operator."""

    def __init__(self, processor: DeviceProcessor) -> None:
        self.p = processor

    def on_batch(self, values: list[Accepted]) -> tuple[list[DeviceOutput], bool]:
        # RETAIN always: dropping a device's state would forget its dedupe memory and
        # which windows were written, and a straggler could then overwrite one.
        return self.p.process(values), StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[DeviceOutput], bool]:
        return self.p.tick(), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[DeviceOutput], bool]:
        # Open windows are incomplete: keep them (recovery resumes them), emit nothing.
        return [], StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        wake = self.p.next_wake_us()
        return None if wake is None else datetime.fromtimestamp(wake / 1_000_000, UTC)

    def snapshot(self) -> dict[str, Any]:
        return self.p.snapshot()


def build_flow(
    source: Source[RawMessage],
    *,
    ingestor: Ingestor,
    points_sink: Sink[DeviceOutput],
    deadletter_sink: Sink[DeadLetterEvent],
    stream: StreamConfig | None = None,
    observer: Observer | None = None,
    clock: Clock | None = None,
    gateway_id: str = "gateway",
    flow_id: str = "sensorgate",
) -> Dataflow:
    """Build the flow: messages -> validated, deduplicated telemetry, aggregates, late data.

    Rejected messages become dead letters. ``points_sink`` receives fresh telemetry
    (:class:`Accepted`), closed-window :class:`~dataflows.windows.Aggregate` values and
    :class:`~dataflows.device.LateReading` values.
    """
    config = stream or StreamConfig()
    obs = observer or NullObserver()
    fleet = FleetClock(config.quiet_us)  # shared by the devices of this process

    def decode(msg: RawMessage) -> Accepted | Rejected:
        result = ingestor.accept(msg)
        if isinstance(result, Accepted):
            obs.message_in(len(result.event.data.readings))
        else:
            obs.rejected(result.reason.value)
        return result

    def build_device(state: dict[str, Any] | None) -> _DeviceLogic:
        return _DeviceLogic(
            DeviceProcessor(None, None, config, clock=clock, fleet=fleet, observer=obs, state=state)
        )

    flow = Dataflow(flow_id)
    raw = op.input("mqtt_in", flow, source)
    checked = op.map("decode", raw, decode)
    split = op.branch("valid", checked, _is_accepted)
    keyed = op.key_on("by_device", split.trues, lambda a: a.device_key)
    outputs = op.stateful_batch("device", keyed, build_device)
    points = op.map("unkey", outputs, lambda kv: kv[1])
    op.output("points_out", points, points_sink)
    letters = op.map("deadletter", split.falses, lambda r: cast(Rejected, r).to_event(gateway_id))
    op.output("deadletters_out", letters, deadletter_sink)
    return flow


def _is_accepted(item: Accepted | Rejected) -> TypeGuard[Accepted]:
    return isinstance(item, Accepted)
