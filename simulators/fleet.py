"""Fleets of simulated devices driven from one thread.

A :class:`SimDevice` owns its identity (site, device, sensor), its signal samplers,
its anomaly plan and its sequence. A :class:`Fleet` walks every device through its
ticks in schedule order: device ``i`` of ``N`` reads at offsets
``k * interval + phase_i`` (phases spread evenly over one interval, so the load is
smooth rather than a burst per interval), waits for the wall clock as the
:class:`~simulators.timebase.Timebase` says, renders each event with a
:class:`~simulators.wire.TelemetryTemplate` and publishes it through a
:class:`~simulators.links.Publisher`. Started anomalies become labels.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Self

from contract import TopicScheme
from contract.errors import BrokerError
from simulators.anomalies import (
    ActiveAnomaly,
    AnomalyKind,
    AnomalyPlan,
    RandomAnomalies,
    ScheduledAnomaly,
    apply_anomaly,
)
from simulators.labels import Label, LabelSink
from simulators.links import Publisher
from simulators.signals import HumidityParams, Signal, TemperatureParams, build_signal
from simulators.timebase import LagStats, Timebase
from simulators.wire import TelemetryTemplate, format_time

__all__ = ["Fleet", "FleetReport", "MetricSpec", "SimDevice", "label_for"]

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


@dataclass
class FleetReport:
    """What a fleet run did."""

    devices: int
    interval_s: float
    speed: float | None
    duration_s: float
    """Simulated seconds covered."""
    wall_s: float = 0.0
    events: int = 0
    readings: int = 0
    silent: int = 0
    """Device ticks skipped by a dropout."""
    labels: int = 0
    acknowledged: int = 0
    bytes: int = 0
    stopped_early: bool = False
    error: str | None = None
    """Why the run ended early, if the broker made it (the run stops, it never drops)."""
    lag: LagStats = field(default_factory=LagStats)

    @classmethod
    def for_schedule(
        cls,
        devices: int,
        *,
        interval_s: float,
        timebase: Timebase,
        lag_tolerance_s: float | None,
    ) -> Self:
        """Check a fleet's schedule and return its empty report (of this class)."""
        if not devices:
            raise ValueError("a fleet needs at least one device")
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0; got {interval_s}")
        speed = timebase.speed or 1.0
        # One interval of wall time, but no less than 0.1 s: at high speeds an interval is
        # shorter than the scheduling jitter of the operating system.
        tolerance = lag_tolerance_s if lag_tolerance_s is not None else max(interval_s / speed, 0.1)
        return cls(
            devices=devices,
            interval_s=interval_s,
            speed=timebase.speed,
            duration_s=0.0,
            lag=LagStats(tolerance_s=tolerance),
        )

    @property
    def target_events_per_s(self) -> float | None:
        """The scheduled publishing rate on the wall clock (None when unthrottled)."""
        if self.speed is None:
            return None
        return self.devices / self.interval_s * self.speed

    @property
    def events_per_s(self) -> float:
        """The achieved event (message) rate."""
        return self.events / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def kept_up(self) -> bool:
        """Whether no item was published later than the lag tolerance."""
        return self.lag.late == 0

    def as_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {
            "devices": self.devices,
            "interval_s": self.interval_s,
            "speed": self.speed,
            "simulated_s": round(self.duration_s, 3),
            "wall_s": round(self.wall_s, 3),
            "events": self.events,
            "readings": self.readings,
            "acknowledged": self.acknowledged,
            "silent_ticks": self.silent,
            "labels": self.labels,
            "bytes": self.bytes,
            "target_events_per_s": self.target_events_per_s,
            "events_per_s": round(self.events_per_s, 1),
            "readings_per_s": round(self.readings / self.wall_s, 1) if self.wall_s else 0.0,
            "kept_up": self.kept_up,
            "stopped_early": self.stopped_early,
            "error": self.error,
            "lag": self.lag.as_dict(),
        }


ProgressFn = Callable[[FleetReport], None]


def label_for(
    device: SimDevice, anomaly: ActiveAnomaly, timebase: Timebase, interval_s: float
) -> Label:
    """Return the ground-truth label of ``anomaly``, started on ``device``.

    Shared by every runner, so that the labels of a run do not depend on how its
    devices are connected.
    """
    start = timebase.event_time(anomaly.first_tick * interval_s + device.phase_s)
    end = timebase.event_time(anomaly.end_tick * interval_s + device.phase_s)
    return Label(
        site=device.site,
        device=device.device,
        metric=anomaly.metric,
        kind=anomaly.kind.value,
        start=start,
        end=end,
        magnitude=None
        if anomaly.kind in (AnomalyKind.DROPOUT, AnomalyKind.STUCK)
        else anomaly.magnitude,
    )


class Fleet:
    """Many devices driven from one thread on one schedule.

    ``duration_s`` (simulated seconds) ends the run; None runs until :meth:`stop`.
    ``lag_tolerance_s`` is how late (wall seconds) a publish may be and still count
    as on schedule; by default one interval of wall time, and at least 0.1 s.
    """

    def __init__(
        self,
        devices: Sequence[SimDevice],
        *,
        publisher: Publisher,
        topics: TopicScheme,
        timebase: Timebase,
        interval_s: float,
        duration_s: float | None,
        label_sinks: Iterable[LabelSink] = (),
        qos: int = 1,
        progress: ProgressFn | None = None,
        progress_every_s: float = 5.0,
        lag_tolerance_s: float | None = None,
        early_s: float = 0.005,
    ) -> None:
        self.report = FleetReport.for_schedule(
            len(devices), interval_s=interval_s, timebase=timebase, lag_tolerance_s=lag_tolerance_s
        )
        self.devices = list(devices)
        self.publisher = publisher
        self.timebase = timebase
        self.interval_s = interval_s
        self.duration_s = duration_s
        self.label_sinks = list(label_sinks)
        self.qos = qos
        self.progress = progress
        self.progress_every_s = progress_every_s
        # Publishing a little early is harmless (event time is the schedule, not the
        # wall clock) and saves a sleep per device when thousands are due per second.
        self.early_s = early_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for device in self.devices:
            if not device.topic:
                device.topic = topics.telemetry(device.site, device.device)

    def stop(self) -> None:
        """Ask the run to end after the device in hand."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def start(self) -> None:
        """Run in a background thread (see :meth:`stop`)."""
        self._thread = threading.Thread(target=self.run, name="sim-fleet", daemon=True)
        self._thread.start()

    def _label(self, device: SimDevice, anomaly: ActiveAnomaly) -> None:
        label = label_for(device, anomaly, self.timebase, self.interval_s)
        for sink in self.label_sinks:
            sink.add(label)
        self.report.labels += 1

    def run(self) -> FleetReport:
        """Run until the duration is covered or :meth:`stop` is called; return the report."""
        report = self.report
        lag = report.lag
        timebase = self.timebase
        start_epoch = timebase.start_epoch
        start_dt = timebase.start
        publisher = self.publisher
        devices = self.devices
        interval = self.interval_s
        qos = self.qos
        stop = self._stop
        throttled = timebase.throttled
        early = self.early_s
        duration = self.duration_s
        next_progress = self.progress_every_s
        timebase.begin()
        tick = 0
        try:
            while not stop.is_set():
                base = tick * interval
                if duration is not None and base >= duration:
                    break
                for device in devices:
                    offset = base + device.phase_s
                    if duration is not None and offset >= duration:
                        break
                    if throttled:
                        remaining = timebase.due_in(offset)
                        if remaining > early:
                            stop.wait(remaining)
                            if stop.is_set():
                                break
                            remaining = timebase.due_in(offset)
                        lag.add(-remaining if remaining < 0 else 0.0)
                    plan = device.plan
                    started = plan.step(tick)
                    for anomaly in started:
                        self._label(device, anomaly)
                    values = device.values(tick, start_epoch + offset)
                    report.duration_s = offset
                    if values is None:
                        report.silent += 1
                        continue
                    time_text = format_time(start_dt + timedelta(seconds=offset))
                    payload = device.render(values, time_text)
                    publisher.publish(device.topic, payload, qos=qos, key=device.index)
                    report.events += 1
                    report.readings += len(values)
                    report.bytes += len(payload)
                    if self.progress is not None and timebase.elapsed() >= next_progress:
                        report.wall_s = timebase.elapsed()
                        next_progress = report.wall_s + self.progress_every_s
                        report.acknowledged = publisher.acknowledged
                        self.progress(report)
                tick += 1
        except BrokerError as exc:
            report.error = str(exc)
            stop.set()
        finally:
            report.stopped_early = stop.is_set()
            report.wall_s = timebase.elapsed()
            report.acknowledged = publisher.acknowledged
        return report

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait for the broker to acknowledge everything; update the report."""
        done = self.publisher.wait_acknowledged(timeout)
        self.report.acknowledged = self.publisher.acknowledged
        return done


def wait_until(condition: Callable[[], bool], timeout: float, poll_s: float = 0.02) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
    return True
