"""One simulated device: :class:`SimDevice` (identity, samplers, anomalies, sequence).

Every runner drives the same objects: :class:`~simulators.fleet.Fleet` (one thread)
and :class:`~simulators.aio_fleet.AsyncFleet` (one connection per device on asyncio).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from simulators.anomalies import (
    AnomalyKind,
    AnomalyPlan,
    RandomAnomalies,
    ScheduledAnomaly,
    apply_anomaly,
)
from simulators.signals import HumidityParams, Signal, TemperatureParams, build_signal
from simulators.wire import TelemetryTemplate

__all__ = ["DEFAULT_DECIMALS", "MetricSpec", "SimDevice"]

DEFAULT_DECIMALS = 4


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric of a device: its name and its model's parameters."""

    name: str
    params: Any  # one of simulators.signals.SignalParams


class SimDevice:
    """One simulated device: identity, samplers, anomalies and sequence."""

    __slots__ = (
        "_anomaly_rng",
        "_metrics",
        "_template",
        "device",
        "index",
        "phase_s",
        "plan",
        "sensor",
        "sequence",
        "site",
        "topic",
    )

    def __init__(
        self,
        *,
        index: int,
        site: str,
        device: str,
        sensor: str,
        metrics: Sequence[MetricSpec],
        seed: int,
        interval_s: float,
        phase_s: float = 0.0,
        scheduled: tuple[ScheduledAnomaly, ...] = (),
        random_anomalies: tuple[RandomAnomalies, ...] = (),
        sequence_start: int = 0,
        topic: str = "",
    ) -> None:
        self.index = index
        self.site = site
        self.device = device
        self.sensor = sensor
        self.phase_s = phase_s
        self.sequence = sequence_start
        self.topic = topic
        # One generator per metric, seeded from the identity: a device's values do not
        # depend on which other devices or metrics exist, nor on injected anomalies.
        ordered = sorted(metrics, key=lambda m: isinstance(m.params, HumidityParams))
        temperature: Signal | None = None
        built: dict[str, tuple[Signal, float, tuple[float, float]]] = {}
        for spec in ordered:
            rng = random.Random(f"{seed}/{site}/{device}/{spec.name}")
            signal = build_signal(spec.params, rng, temperature=temperature)
            if isinstance(spec.params, TemperatureParams) and temperature is None:
                temperature = signal
            built[spec.name] = (signal, spec.params.scale, spec.params.valid_range)
        self._metrics = [(m.name, *built[m.name]) for m in metrics]
        self._anomaly_rng = random.Random(f"{seed}/{site}/{device}/anomalies")
        self.plan = AnomalyPlan(
            site=site,
            device=device,
            models={name: (scale, rng_) for name, _s, scale, rng_ in self._metrics},
            interval_s=interval_s,
            phase_s=phase_s,
            scheduled=scheduled,
            random_specs=random_anomalies,
            rng=self._anomaly_rng,
        )
        self._template = TelemetryTemplate(
            site=site,
            device=device,
            sensor=sensor,
            units={m.name: m.params.unit for m in metrics},
        )

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric names, in publishing order."""
        return tuple(m[0] for m in self._metrics)

    def values(self, tick: int, t: float) -> dict[str, float] | None:
        """Sample every metric at Unix time ``t`` (tick ``tick``) with anomalies applied.

        Returns None while a dropout keeps the device silent. Samplers advance even
        then, so the clean signal is the same with and without anomalies.
        """
        raw = {name: signal.sample(t) for name, signal, _scale, _range in self._metrics}
        plan = self.plan
        if not plan.active:
            return raw
        out = raw
        for anomaly in plan.active:
            if anomaly.kind is AnomalyKind.DROPOUT:
                return None
            if anomaly.metric in out:
                _signal, _scale, valid_range = self._model(anomaly.metric)
                out[anomaly.metric] = apply_anomaly(
                    anomaly, out[anomaly.metric], tick, self._anomaly_rng, valid_range
                )
        return out

    def _model(self, metric: str) -> tuple[Signal, float, tuple[float, float]]:
        for name, signal, scale, valid_range in self._metrics:
            if name == metric:
                return signal, scale, valid_range
        raise KeyError(metric)

    def render(self, values: dict[str, float], time_text: str) -> bytes:
        """Render one telemetry event of ``values`` at ``time_text`` and advance the sequence."""
        readings = [(name, round(v, DEFAULT_DECIMALS), time_text) for name, v in values.items()]
        payload = self._template.render(self.sequence, time_text, readings)
        self.sequence += 1
        return payload
