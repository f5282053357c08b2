"""Fleets of simulated devices driven from one thread.

A :class:`~simulators.sim_device.SimDevice` owns its identity (site, device, sensor),
its signal samplers, its anomaly plan and its sequence. A :class:`Fleet` walks every
device through its ticks in schedule order: device ``i`` of ``N`` reads at offsets
``k * interval + phase_i`` (phases spread evenly over one interval, so the load is
smooth rather than a burst per interval), waits for the wall clock as the
:class:`~simulators.timebase.Timebase` says, renders each event with a
:class:`~simulators.wire.TelemetryTemplate` and publishes it through a
:class:`~simulators.links.Publisher`. Started anomalies become labels.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta

from contract import TopicScheme
from contract.errors import BrokerError
from simulators.anomalies import ActiveAnomaly
from simulators.fleet_report import FleetReport, label_for
from simulators.labels import LabelSink
from simulators.links import Publisher
from simulators.sim_device import MetricSpec, SimDevice
from simulators.timebase import Timebase
from simulators.wire import format_time

__all__ = ["Fleet", "FleetReport", "MetricSpec", "SimDevice", "label_for"]

ProgressFn = Callable[[FleetReport], None]


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
        self._next_progress = progress_every_s
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
        timebase = self.timebase
        interval = self.interval_s
        stop = self._stop
        duration = self.duration_s
        self._next_progress = self.progress_every_s
        timebase.begin()
        tick = 0
        try:
            while not stop.is_set():
                base = tick * interval
                if duration is not None and base >= duration:
                    break
                for device in self.devices:
                    offset = base + device.phase_s
                    if duration is not None and offset >= duration:
                        break
                    if not self._wait_until_due(offset):
                        break
                    self._tick(device, tick, offset)
                tick += 1
        except BrokerError as exc:
            report.error = str(exc)
            stop.set()
        finally:
            report.stopped_early = stop.is_set()
            report.wall_s = timebase.elapsed()
            report.acknowledged = self.publisher.acknowledged
        return report

    def _wait_until_due(self, offset: float) -> bool:
        """Wait for ``offset`` on the wall clock and count the lag; False if stopped."""
        timebase = self.timebase
        if not timebase.throttled:
            return True
        remaining = timebase.due_in(offset)
        if remaining > self.early_s:
            self._stop.wait(remaining)
            if self._stop.is_set():
                return False
            remaining = timebase.due_in(offset)
        self.report.lag.add(-remaining if remaining < 0 else 0.0)
        return True

    def _tick(self, device: SimDevice, tick: int, offset: float) -> None:
        """Sample, render and publish one device's reading at ``offset``; note labels."""
        report = self.report
        timebase = self.timebase
        for anomaly in device.plan.step(tick):
            self._label(device, anomaly)
        values = device.values(tick, timebase.start_epoch + offset)
        report.duration_s = offset
        if values is None:
            report.silent += 1
            return
        time_text = format_time(timebase.start + timedelta(seconds=offset))
        payload = device.render(values, time_text)
        self.publisher.publish(device.topic, payload, qos=self.qos, key=device.index)
        report.events += 1
        report.readings += len(values)
        report.bytes += len(payload)
        if self.progress is not None and timebase.elapsed() >= self._next_progress:
            report.wall_s = timebase.elapsed()
            self._next_progress = report.wall_s + self.progress_every_s
            report.acknowledged = self.publisher.acknowledged
            self.progress(report)

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
