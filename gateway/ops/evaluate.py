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

import bisect
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contract import TelemetryEvent
from contract.errors import ConfigError
from dataflows.rules import RuleSet
from gateway.ops.detect import AlarmInterval, DetectionRun, run_detection, table_events
from gateway.ops.evaluate_nab import counted_rules
from simulators.csv_replay import CsvRow, CsvTable, read_csv
from simulators.labels import Label

__all__ = [
    "SKAB_LABEL_COLUMNS",
    "Counts",
    "Evaluation",
    "EventStats",
    "FileResult",
    "evaluate_labelled",
    "evaluate_skab",
    "format_report",
    "simulate_labelled",
    "skab_files",
]

SKAB_LABEL_COLUMNS = ("anomaly", "changepoint")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(when: datetime) -> int:
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass
class Counts:
    """Confusion counts of point-wise predictions."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    def add(self, truth: bool, pred: bool) -> None:
        """Count one point."""
        if truth:
            if pred:
                self.tp += 1
            else:
                self.fn += 1
        elif pred:
            self.fp += 1
        else:
            self.tn += 1

    def merge(self, other: Counts) -> None:
        """Add another's counts."""
        self.tp += other.tp
        self.fp += other.fp
        self.tn += other.tn
        self.fn += other.fn

    def scores(self) -> dict[str, float | int | None]:
        """Precision, recall, F1, FAR and MAR (None where undefined), with the counts."""

        def ratio(a: int, b: int) -> float | None:
            return a / b if b else None

        precision = ratio(self.tp, self.tp + self.fp)
        recall = ratio(self.tp, self.tp + self.fn)
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision is not None and recall is not None and precision + recall > 0
            else (0.0 if recall is not None else None)
        )
        return {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "far": ratio(self.fp, self.fp + self.tn),
            "mar": ratio(self.fn, self.fn + self.tp),
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
        }


@dataclass
class EventStats:
    """Event-level detection: labelled anomalies found, and how fast."""

    total: int = 0
    detected: int = 0
    delays_s: list[float] = field(default_factory=list)

    def add(self, delay_s: float | None) -> None:
        """Count one labelled anomaly (delay None: missed)."""
        self.total += 1
        if delay_s is not None:
            self.detected += 1
            self.delays_s.append(delay_s)

    def merge(self, other: EventStats) -> None:
        """Add another's events."""
        self.total += other.total
        self.detected += other.detected
        self.delays_s.extend(other.delays_s)

    def scores(self) -> dict[str, float | int | None]:
        """Event recall, mean and median detection delay (seconds)."""
        delays = sorted(self.delays_s)
        return {
            "events": self.total,
            "detected": self.detected,
            "event_recall": self.detected / self.total if self.total else None,
            "mean_delay_s": sum(delays) / len(delays) if delays else None,
            "median_delay_s": delays[len(delays) // 2] if delays else None,
        }


@dataclass
class FileResult:
    """Scores of one file (or one device)."""

    name: str
    kind: str
    counts: Counts
    events: EventStats
    alarms: int


@dataclass
class Evaluation:
    """Scores overall and per kind, plus per file."""

    dataset: str
    rules: str
    counts: Counts = field(default_factory=Counts)
    events: EventStats = field(default_factory=EventStats)
    by_kind: dict[str, tuple[Counts, EventStats]] = field(default_factory=dict)
    files: list[FileResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    kinds_recall_only: bool = False
    """Per-kind counts hold only labelled points: precision, F1 and FAR do not apply."""

    def kind_scores(self, counts: Counts) -> dict[str, float | int | None]:
        """Point scores of one kind (recall and MAR only when kinds hold positives only)."""
        scores = counts.scores()
        if self.kinds_recall_only:
            for key in ("precision", "f1", "far", "fp", "tn"):
                scores[key] = None
        return scores

    def kind(self, name: str) -> tuple[Counts, EventStats]:
        """Return the counters of one kind."""
        if name not in self.by_kind:
            self.by_kind[name] = (Counts(), EventStats())
        return self.by_kind[name]

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready report."""
        return {
            "dataset": self.dataset,
            "rules": self.rules,
            "point": self.counts.scores(),
            "event": self.events.scores(),
            "by_kind": {
                k: {"point": self.kind_scores(c), "event": e.scores()}
                for k, (c, e) in sorted(self.by_kind.items())
            },
            "files": [
                {
                    "name": f.name,
                    "kind": f.kind,
                    "alarms": f.alarms,
                    **{k: v for k, v in f.counts.scores().items() if k in ("f1", "far", "mar")},
                    **f.events.scores(),
                }
                for f in self.files
            ],
            "notes": self.notes,
            **self.extra,
        }


def _covered(times: Sequence[int], intervals: Sequence[AlarmInterval]) -> list[bool]:
    """For each time (sorted), whether an interval covers it."""
    pred = [False] * len(times)
    for iv in intervals:
        lo = bisect.bisect_left(times, iv.start_us)
        hi = len(times) if iv.end_us is None else bisect.bisect_left(times, iv.end_us)
        for i in range(lo, hi):
            pred[i] = True
    return pred


def _first_raise(intervals: Sequence[AlarmInterval], start_us: int, until_us: int) -> int | None:
    raises = [iv.start_us for iv in intervals if start_us <= iv.start_us < until_us]
    return min(raises) if raises else None


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


def evaluate_skab(
    root: Path, rules: RuleSet, *, grace_s: float = 60.0, keep: str | None = None
) -> tuple[Evaluation, dict[str, Any] | None]:
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
        times = [_us(r.time) for r in clean.rows]
        pred = _covered(times, intervals)
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
            first = _first_raise(intervals, start, end + round(grace_s * 1e6))
            stats.add(None if first is None else (first - start) / 1e6)
        kind = path.parent.name
        ev.counts.merge(counts)
        ev.events.merge(stats)
        kc, ke = ev.kind(kind)
        kc.merge(counts)
        ke.merge(stats)
        ev.files.append(FileResult(name, kind, counts, stats, len(intervals)))
        if keep is not None and name == keep:
            kept = {"name": name, "table": clean, "labels": labels, "intervals": intervals}
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
    from simulators.anomalies import AnomalyKind, RandomAnomalies
    from simulators.fleet import Fleet
    from simulators.labels import MemoryLabelSink
    from simulators.links import MemoryPublisher
    from simulators.scenario import build_devices, load_scenario, simple_scenario
    from simulators.timebase import Timebase

    start = datetime(2026, 1, 5, tzinfo=UTC)
    if scenario is None:
        spec = simple_scenario(
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
    else:
        spec = load_scenario(scenario).override(duration_s=duration_s, speed="max", start=start)
    topics = TopicScheme()
    sim_devices = build_devices(spec, topics, sequence_start=0)
    publisher = MemoryPublisher()
    labels = MemoryLabelSink()
    fleet = Fleet(
        sim_devices,
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
        counts = Counts()
        stats = EventStats()
        points: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for event in events:
            for r in event.data.readings:
                points[f"{r.sensor}/{r.metric}"].append((_us(r.time), r.metric))
        for series, pts in points.items():
            pts.sort()
            times = [t for t, _ in pts]
            relevant = by_series.get(series, []) + by_series.get("*", [])
            pred = _covered(times, relevant)
            metric = pts[0][1]
            spans = [
                (_us(lb.start), _us(lb.end), lb.kind)
                for lb in dev_labels
                if lb.metric in (metric, "*")
            ]
            for (t, _), p in zip(pts, pred, strict=True):
                kind = next((k for s, e, k in spans if s <= t < e), None)
                counts.add(kind is not None, p)
                if kind is not None:
                    ev.kind(kind)[0].add(True, p)
        for lb in dev_labels:
            relevant = list(by_series.get("*", []))
            for series, ivs in by_series.items():
                if lb.metric == "*" or series.endswith(f"/{lb.metric}"):
                    relevant.extend(ivs)
            start = _us(lb.start)
            first = _first_raise(relevant, start, _us(lb.end) + round(grace_s * 1e6))
            delay = None if first is None else (first - start) / 1e6
            stats.add(delay)
            ev.kind(lb.kind)[1].add(delay)
        ev.counts.merge(counts)
        ev.events.merge(stats)
        ev.files.append(FileResult(f"{site}/{device}", "device", counts, stats, len(intervals)))
    return ev, runs


# -- output -----------------------------------------------------------------------------


def _fmt(value: float | int | None, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if pct:
        return f"{100 * value:.1f}%"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def format_report(ev: Evaluation) -> str:
    """Return a plain-text report: overall scores, then per kind."""
    rows = [["", "precision", "recall", "F1", "FAR", "MAR", "events", "ev.recall", "delay s"]]

    def row(name: str, c: Counts, e: EventStats, kind: bool = True) -> list[str]:
        p, s = (ev.kind_scores(c) if kind else c.scores()), e.scores()
        return [
            name,
            _fmt(p["precision"]),
            _fmt(p["recall"]),
            _fmt(p["f1"]),
            _fmt(p["far"], pct=True),
            _fmt(p["mar"], pct=True),
            f"{s['detected']}/{s['events']}",
            _fmt(s["event_recall"]),
            _fmt(s["mean_delay_s"]),
        ]

    rows.append(row("all", ev.counts, ev.events, kind=False))
    for kind, (c, e) in sorted(ev.by_kind.items()):
        rows.append(row(kind, c, e))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"dataset: {ev.dataset}   rules: {ev.rules}"]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    for key, value in ev.extra.items():
        lines.append(f"{key}: {value}")
    return "\n".join(lines)
