"""Scores of detection against labels: point-wise counts, event-level detection, report.

Point-wise scores follow SKAB's outlier-detection leaderboard: every labelled point is
a binary prediction; precision, recall and F1 of the anomalous class, FAR = FP / (FP +
TN) and MAR = FN / (FN + TP). A point is predicted anomalous when an alarm interval
covers its time (:func:`covered`), from the raise (inclusive) to the clear
(exclusive). Event-level scores: a labelled anomaly is detected by the first raise
between its start and its end plus a grace (:func:`first_raise`).
:mod:`~gateway.ops.evaluate` fills these from SKAB and simulated data.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.ops.detect import AlarmInterval

__all__ = [
    "Counts",
    "Evaluation",
    "EventStats",
    "FileResult",
    "covered",
    "first_raise",
    "format_report",
]


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


def covered(times: Sequence[int], intervals: Sequence[AlarmInterval]) -> list[bool]:
    """Return, for each time (sorted), whether an interval covers it."""
    pred = [False] * len(times)
    for iv in intervals:
        lo = bisect.bisect_left(times, iv.start_us)
        hi = len(times) if iv.end_us is None else bisect.bisect_left(times, iv.end_us)
        for i in range(lo, hi):
            pred[i] = True
    return pred


def first_raise(intervals: Sequence[AlarmInterval], start_us: int, until_us: int) -> int | None:
    """Return the earliest raise in ``[start_us, until_us)``, or None."""
    raises = [iv.start_us for iv in intervals if start_us <= iv.start_us < until_us]
    return min(raises) if raises else None


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
