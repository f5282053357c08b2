"""Evaluation of detection against labelled data: SKAB and simulated scenarios.

Point-wise scores follow SKAB's outlier-detection leaderboard: every labelled row
(SKAB) or reading (simulated data) is a binary prediction, counted over all files
together; precision, recall and F1 of the anomalous class, FAR = FP / (FP + TN) and
MAR = FN / (FN + TP). A row is predicted anomalous when an alarm of its device (SKAB:
any series; simulated: its series or a device-level alarm) is active at its time,
from the raise (inclusive) to the clear (exclusive).

Event-level scores: every labelled anomaly (a SKAB run of consecutive ``anomaly = 1``
rows; a simulator label) is detected when a matching alarm is raised between its
start and its end plus ``grace``; the detection delay is the time from the start to
that first raise. Scores are also given per anomaly kind (SKAB: the experiment's
folder; simulated: the label's kind).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from contract import TelemetryEvent
from contract.errors import ConfigError
from dataflows.eventclock import to_us
from dataflows.rules import RuleSet
from gateway.ops.detect import AlarmInterval, DetectionRun, run_detection, table_events
from gateway.ops.evaluate_nab import counted_rules
from gateway.ops.scores import Counts, Evaluation, EventStats, FileResult, covered, first_raise
from simulators.csv_replay import CsvRow, CsvTable, read_csv
from simulators.labels import Label

if TYPE_CHECKING:
    from simulators.scenario import Scenario

__all__ = [
    "SKAB_LABEL_COLUMNS",
    "KeptFile",
    "evaluate_labelled",
    "evaluate_skab",
    "simulate_labelled",
    "skab_files",
]

SKAB_LABEL_COLUMNS = ("anomaly", "changepoint")


# -- SKAB -----------------------------------------------------------------------------


def _split_labels(table: CsvTable) -> tuple[CsvTable, list[bool] | None]:
    """Take SKAB's label columns out of the values; return the labels of ``anomaly``."""
    labels: list[bool] | None = [] if "anomaly" in table.metrics else None
    rows = []
    for row in table.rows:
        values = dict(row.values)
        flag = values.pop("anomaly", None)
        values.pop("changepoint", None)
        if labels is not None:
            labels.append(bool(flag))
        rows.append(CsvRow(row.line, row.time, values))
    metrics = tuple(m for m in table.metrics if m not in SKAB_LABEL_COLUMNS)
    clean = CsvTable(
        path=table.path,
        delimiter=table.delimiter,
        time_column=table.time_column,
        time_format=table.time_format,
        timezone=table.timezone,
        metrics=metrics,
        rows=rows,
        errors=table.errors,
    )
    return clean, labels


def _segments(times: Sequence[int], labels: Sequence[bool]) -> list[tuple[int, int]]:
    """Return runs of anomalous rows as [start, end) (end: the next row time)."""
    out = []
    start: int | None = None
    for i, flag in enumerate(labels):
        if flag and start is None:
            start = times[i]
        elif not flag and start is not None:
            out.append((start, times[i]))
            start = None
    if start is not None:
        step = times[-1] - times[-2] if len(times) > 1 else 1_000_000
        out.append((start, times[-1] + step))
    return out


def skab_files(root: Path) -> list[Path]:
    """SKAB's CSV files under ``root``, in a stable order."""
    if not root.is_dir():
        raise ConfigError("skab", f"{root} is not a directory (expected SKAB's data folder)")
    files = sorted(root.rglob("*.csv"), key=lambda p: (p.parent.name, _num(p.stem), p.name))
    if not files:
        raise ConfigError("skab", f"no CSV files under {root}")
    return files


def _num(stem: str) -> int:
    return int(stem) if stem.isdigit() else -1


@dataclass(frozen=True, slots=True)
class KeptFile:
    """One SKAB file as scored: what its chart needs."""

    name: str
    """Relative to the data folder (``valve1/0.csv``)."""
    table: CsvTable
    """The file without its label columns."""
    labels: list[bool]
    """``anomaly`` of each row."""
    intervals: list[AlarmInterval]
    """When each alarm was active."""


def evaluate_skab(
    root: Path, rules: RuleSet, *, grace_s: float = 60.0, keep: str | None = None
) -> tuple[Evaluation, KeptFile | None]:
    """Run detection over every SKAB file; score the labelled ones.

    Files without an ``anomaly`` column (anomaly-free) are scored apart: their false
    alarm rate is reported in ``extra``. Returns the evaluation and, for the file
    named ``keep`` (relative path), what a chart needs.
    """
    # SKAB labels faults in the process, not silences: a deadman raise on one of its
    # real gaps in sampling is no detection (as in the NAB scoring).
    rules = counted_rules(rules)
    ev = Evaluation(dataset=str(root), rules=rules.source)
    free = Counts()
    kept = None
    for path in skab_files(root):
        table = read_csv(path)
        clean, labels = _split_labels(table)
        name = str(path.relative_to(root))
        device = name.removesuffix(".csv").replace("/", "-")
        events = table_events(clean, site="skab", device=device)
        run = run_detection(events, rules, site="skab", device=device)
        intervals = run.intervals()
        times = [to_us(r.time) for r in clean.rows]
        pred = covered(times, intervals)
        counts = Counts()
        stats = EventStats()
        if labels is None:
            for p in pred:
                free.add(False, p)
            ev.notes.append(f"{name}: no anomaly column; scored apart as anomaly-free")
            continue
        for truth, p in zip(labels, pred, strict=True):
            counts.add(truth, p)
        for start, end in _segments(times, labels):
            first = first_raise(intervals, start, end + round(grace_s * 1e6))
            stats.add(None if first is None else (first - start) / 1e6)
        kind = path.parent.name
        ev.counts.merge(counts)
        ev.events.merge(stats)
        kc, ke = ev.kind(kind)
        kc.merge(counts)
        ke.merge(stats)
        ev.files.append(FileResult(name, kind, counts, stats, len(intervals)))
        if keep is not None and name == keep:
            kept = KeptFile(name, clean, labels, intervals)
    ev.extra["anomaly_free"] = {
        "rows": free.fp + free.tn,
        "false_alarm_rate": free.scores()["far"],
    }
    return ev, kept


# -- simulated, labelled data ------------------------------------------------------------


def simulate_labelled(
    *,
    scenario: str | None = None,
    devices: int = 10,
    duration_s: float = 12 * 3600,
    interval_s: float = 10.0,
    rate_per_hour: float = 1.0,
    seed: int = 7,
) -> tuple[dict[tuple[str, str], list[TelemetryEvent]], list[Label]]:
    """Run a simulated fleet in memory (no broker) and return its telemetry and labels.

    Without ``scenario``: ``devices`` devices with temperature, humidity, pressure and
    power, every anomaly kind at random (``rate_per_hour`` per device). With a
    scenario (a built-in name or a TOML path), that scenario over ``duration_s``.
    """
    from contract import TopicScheme, decode_as
    from simulators.fleet import Fleet
    from simulators.labels import MemoryLabelSink
    from simulators.links import MemoryPublisher
    from simulators.scenario import build_devices, load_scenario
    from simulators.timebase import Timebase

    start = datetime(2026, 1, 5, tzinfo=UTC)
    if scenario is None:
        spec = _random_fleet(devices, duration_s, interval_s, rate_per_hour, seed, start)
    else:
        spec = load_scenario(scenario).override(duration_s=duration_s, speed="max", start=start)
    topics = TopicScheme()
    publisher = MemoryPublisher()
    labels = MemoryLabelSink()
    fleet = Fleet(
        build_devices(spec, topics, sequence_start=0),
        publisher=publisher,
        topics=topics,
        timebase=Timebase(start=spec.start or start, speed=None),
        interval_s=spec.interval_s,
        duration_s=spec.duration_s,
        label_sinks=[labels],
    )
    fleet.run()
    by_device: dict[tuple[str, str], list[TelemetryEvent]] = defaultdict(list)
    for msg in publisher.messages:
        event = decode_as(msg.payload, TelemetryEvent)
        by_device[(event.data.site, event.data.device)].append(event)
    return dict(by_device), list(labels.labels)


def _random_fleet(
    devices: int,
    duration_s: float,
    interval_s: float,
    rate_per_hour: float,
    seed: int,
    start: datetime,
) -> Scenario:
    """Return the default scenario: four metrics a device, every anomaly kind at random."""
    from simulators.anomalies import AnomalyKind, RandomAnomalies
    from simulators.scenario import simple_scenario

    return simple_scenario(
        devices=devices,
        metrics=("temperature", "humidity", "pressure", "power"),
        interval_s=interval_s,
        seed=seed,
        random_anomalies=(
            RandomAnomalies(
                kinds=tuple(AnomalyKind),
                rate_per_hour=rate_per_hour,
                min_duration_s=60,
                max_duration_s=900,
            ),
        ),
        duration_s=duration_s,
        speed="max",
        start=start,
    )


def evaluate_labelled(
    telemetry: dict[tuple[str, str], list[TelemetryEvent]],
    labels: Sequence[Label],
    rules: RuleSet,
    *,
    dataset: str,
    grace_s: float = 60.0,
) -> tuple[Evaluation, dict[tuple[str, str], DetectionRun]]:
    """Score detection over per-device telemetry against simulator labels.

    A reading is anomalous when a label of its device covers its time and names its
    metric (or ``*``); it is predicted anomalous when an alarm of its series or a
    device-level alarm of its device is active then. A label is detected when such an
    alarm is raised within ``[start, end + grace)``.
    """
    ev = Evaluation(dataset=dataset, rules=rules.source, kinds_recall_only=True)
    runs: dict[tuple[str, str], DetectionRun] = {}
    by_device: dict[tuple[str, str], list[Label]] = defaultdict(list)
    for label in labels:
        by_device[(label.site, label.device)].append(label)
    for (site, device), events in sorted(telemetry.items()):
        run = run_detection(events, rules, site=site, device=device)
        runs[(site, device)] = run
        intervals = run.intervals()
        by_series: dict[str, list[AlarmInterval]] = defaultdict(list)
        for iv in intervals:
            by_series[iv.series].append(iv)
        dev_labels = by_device.get((site, device), [])
        counts = _score_points(ev, events, by_series, dev_labels)
        stats = _score_labels(ev, by_series, dev_labels, grace_s)
        ev.counts.merge(counts)
        ev.events.merge(stats)
        ev.files.append(FileResult(f"{site}/{device}", "device", counts, stats, len(intervals)))
    return ev, runs


def _score_points(
    ev: Evaluation,
    events: Sequence[TelemetryEvent],
    by_series: dict[str, list[AlarmInterval]],
    dev_labels: Sequence[Label],
) -> Counts:
    """Point-wise counts of one device's readings (and each label kind's, into ``ev``)."""
    counts = Counts()
    points: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for event in events:
        for r in event.data.readings:
            points[f"{r.sensor}/{r.metric}"].append((to_us(r.time), r.metric))
    for series, pts in points.items():
        pts.sort()
        times = [t for t, _ in pts]
        relevant = by_series.get(series, []) + by_series.get("*", [])
        pred = covered(times, relevant)
        metric = pts[0][1]
        spans = [
            (to_us(lb.start), to_us(lb.end), lb.kind)
            for lb in dev_labels
            if lb.metric in (metric, "*")
        ]
        for (t, _), p in zip(pts, pred, strict=True):
            kind = next((k for s, e, k in spans if s <= t < e), None)
            counts.add(kind is not None, p)
            if kind is not None:
                ev.kind(kind)[0].add(True, p)
    return counts


def _score_labels(
    ev: Evaluation,
    by_series: dict[str, list[AlarmInterval]],
    dev_labels: Sequence[Label],
    grace_s: float,
) -> EventStats:
    """Event-level detection of one device's labels (and each kind's, into ``ev``)."""
    stats = EventStats()
    for lb in dev_labels:
        relevant = list(by_series.get("*", []))
        for series, ivs in by_series.items():
            if lb.metric == "*" or series.endswith(f"/{lb.metric}"):
                relevant.extend(ivs)
        start = to_us(lb.start)
        first = first_raise(relevant, start, to_us(lb.end) + round(grace_s * 1e6))
        delay = None if first is None else (first - start) / 1e6
        stats.add(delay)
        ev.kind(lb.kind)[1].add(delay)
    return stats
