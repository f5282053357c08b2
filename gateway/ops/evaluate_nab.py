"""Numenta Anomaly Benchmark (NAB) scoring of the gateway's detection engine.

A NAB-layout folder holds ``data/<category>/<file>.csv`` (``timestamp,value``, naive
times read as UTC) and ``labels/combined_windows.json`` (anomaly windows per file).
Each file is run through the gateway's own engine (:func:`dataflows.offline.run_offline`,
what ``sensorgate detect`` runs) as one device with one series. Every ``raised`` alarm
event of a rule other than deadman and offline is a detection: it marks the first data
row at or after its event time with score 1.0; every other row scores 0 and the
threshold is 1.0.

Scoring is NAB's own, in :mod:`~gateway.ops.nab_score`; raw scores add up over files and
are normalised per profile, per group of files (all, each half, each category).
"""

from __future__ import annotations

import csv
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from contract.alarms import AlarmRaisedEvent
from contract.errors import ConfigError
from dataflows.eventclock import to_us
from dataflows.offline import OfflineEvents, run_offline
from dataflows.rules import RuleSet
from gateway.ops.nab_score import PROFILES, detection_rows, file_score, normalised

__all__ = [
    "IGNORED_KINDS",
    "NabEvaluation",
    "NabFile",
    "Published",
    "evaluate_nab",
    "format_nab_report",
    "nab_files",
    "published_scores",
    "read_nab_file",
    "split_half",
]

IGNORED_KINDS = frozenset({"deadman", "offline"})
"""Rule kinds whose raises are not detections (silence and last will say nothing of values)."""

Published = dict[str, dict[str, dict[str, float | None]]]
"""Detector -> group of files -> profile -> normalised score."""

_NS = uuid.UUID("6f1d2a8e-3c1b-5f0e-9a44-0d5e3c7b2a19")


def _parse_time(text: str) -> int:
    when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return to_us(when)


# -- the data ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NabFile:
    """One NAB data file: its name relative to ``data/``, times (µs), values, windows."""

    name: str
    t_us: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    windows: tuple[tuple[int, int], ...]

    @property
    def category(self) -> str:
        """The folder the file is in (``realTweets``, ...)."""
        return self.name.split("/", 1)[0]

    @property
    def stem(self) -> str:
        """The file name without folder and suffix."""
        return Path(self.name).stem


def nab_files(root: Path) -> list[str]:
    """Names of the data files under ``root/data`` (``category/file.csv``), sorted."""
    data = root / "data"
    if not data.is_dir():
        raise ConfigError("nab", f"{data} is not a directory (expected a NAB-layout folder)")
    names = sorted(str(p.relative_to(data).as_posix()) for p in data.rglob("*.csv"))
    if not names:
        raise ConfigError("nab", f"no CSV files under {data}")
    return names


def _windows(root: Path) -> dict[str, list[list[str]]]:
    path = root / "labels" / "combined_windows.json"
    try:
        doc: dict[str, list[list[str]]] = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("nab", f"cannot read {path}: {exc.strerror or exc}") from None
    return doc


def read_nab_file(root: Path, name: str, windows: dict[str, list[list[str]]]) -> NabFile:
    """Read one data file (``timestamp,value``) and its label windows."""
    times: list[int] = []
    values: list[float] = []
    with (root / "data" / name).open(newline="", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            times.append(_parse_time(row["timestamp"]))
            values.append(float(row["value"]))
    spans = tuple((_parse_time(a), _parse_time(b)) for a, b in windows.get(name, []))
    return NabFile(name, np.asarray(times, np.int64), np.asarray(values, np.float64), spans)


def split_half(name: str) -> str:
    """Return ``"A"`` or ``"B"``: a fixed hash of the file name (development vs check half)."""
    digest = hashlib.sha1(Path(name).name.encode(), usedforsecurity=False).digest()
    return "A" if digest[0] % 2 == 0 else "B"


# -- running the engine -----------------------------------------------------------------


def _raises(nab: NabFile, rules: RuleSet, *, site: str = "nab") -> list[int]:
    """Run the gateway's engine over one file; return the times of counted raises (µs)."""
    n = len(nab.t_us)
    base = f"nab:{nab.name}"
    events = OfflineEvents(
        event_ids=[str(uuid.uuid5(_NS, f"{base}:{i}")) for i in range(n)],
        counts=np.ones(n, np.int64),
        sensors=["nab"] * n,
        metrics=["value"] * n,
        t_us=nab.t_us,
        values=nab.values,
    )
    result = run_offline(counted_rules(rules), site, nab.stem, events)
    return [
        to_us(e.data.event_time)
        for e in result.alarms
        if isinstance(e, AlarmRaisedEvent) and e.data.kind not in IGNORED_KINDS
    ]


def counted_rules(rules: RuleSet) -> RuleSet:
    """Keep the rules whose raises count (deadman and offline raises are not detections).

    Dropping them changes no other rule's alarms (each rule has its own machines) and
    spares the engine a deadman check between every two rows of 5-minute data.
    """
    kept = [r for r in rules.rules if r.kind not in IGNORED_KINDS]
    return RuleSet(kept, source=rules.source)


@dataclass
class NabEvaluation:
    """Raw NAB scores per file and profile, with the detections behind them."""

    dataset: str
    rules: str
    files: list[str] = field(default_factory=list)
    category: dict[str, str] = field(default_factory=dict)
    half: dict[str, str] = field(default_factory=dict)
    windows: dict[str, int] = field(default_factory=dict)
    raw: dict[str, dict[str, float]] = field(default_factory=dict)
    """File -> profile -> raw score."""
    detections: dict[str, list[int]] = field(default_factory=dict)
    """File -> detection times (µs), before the row lookup."""

    def total(self, profile: str, files: Iterable[str] | None = None) -> float | None:
        """Normalised score of ``profile`` over ``files`` (all by default)."""
        chosen = list(self.files if files is None else files)
        spec = next(p for p in PROFILES if p.name == profile)
        raw = sum(self.raw[f][profile] for f in chosen)
        return normalised(raw, sum(self.windows[f] for f in chosen), spec)

    def groups(self) -> dict[str, list[str]]:
        """Files by row of the report: all, each half, each category."""
        out: dict[str, list[str]] = {"all": list(self.files)}
        for half in ("A", "B"):
            out[f"half {half}"] = [f for f in self.files if self.half[f] == half]
        for cat in sorted(set(self.category.values())):
            out[cat] = [f for f in self.files if self.category[f] == cat]
        return out

    def as_dict(self, published: Published | None = None) -> Any:
        """Return a JSON-ready report."""
        groups = self.groups()
        return {
            "dataset": self.dataset,
            "rules": self.rules,
            "scores": {
                g: {
                    "files": len(fs),
                    "windows": sum(self.windows[f] for f in fs),
                    "detections": sum(len(self.detections[f]) for f in fs),
                    **{p.name: self.total(p.name, fs) for p in PROFILES},
                }
                for g, fs in groups.items()
            },
            "files": {
                f: {
                    "category": self.category[f],
                    "half": self.half[f],
                    "windows": self.windows[f],
                    "detections": len(self.detections[f]),
                    "raw": self.raw[f],
                }
                for f in self.files
            },
            "published": published or {},
        }


def evaluate_nab(
    root: Path,
    rules: RuleSet,
    *,
    only: Callable[[str], bool] | None = None,
    keep: Callable[[NabFile, list[int]], None] | None = None,
) -> NabEvaluation:
    """Run the engine over every NAB file under ``root`` and score it with every profile.

    ``only`` selects files by name; ``keep`` sees each file and its detections (charts).
    """
    windows = _windows(root)
    ev = NabEvaluation(dataset=str(root), rules=rules.source)
    for name in nab_files(root):
        if only is not None and not only(name):
            continue
        nab = read_nab_file(root, name, windows)
        found = _raises(nab, rules)
        scores = detection_rows(nab.t_us, found)
        times = nab.t_us.tolist()
        ev.files.append(name)
        ev.category[name] = nab.category
        ev.half[name] = split_half(name)
        ev.windows[name] = len(nab.windows)
        ev.detections[name] = found
        ev.raw[name] = {p.name: file_score(times, scores, nab.windows, p) for p in PROFILES}
        if keep is not None:
            keep(nab, found)
    return ev


def published_scores(
    root: Path, groups: dict[str, list[str]], windows: dict[str, int]
) -> Published:
    """NAB's published detectors (``root/results``) on the same groups of files.

    Returns detector -> group -> profile -> normalised score (None where a file's score
    is missing from the published results).
    """
    out: Published = {}
    results = root / "results"
    if not results.is_dir():
        return out
    for folder in sorted(p for p in results.iterdir() if p.is_dir()):
        per: dict[str, dict[str, float | None]] = {}
        raw_by_profile: dict[str, dict[str, float]] = {}
        for p in PROFILES:
            path = folder / f"{folder.name}_{p.name}_scores.csv"
            if path.exists():
                with path.open(newline="", encoding="utf-8") as stream:
                    raw_by_profile[p.name] = {
                        r["File"]: float(r["Score"]) for r in csv.DictReader(stream)
                    }
        for group, files in groups.items():
            per[group] = {}
            for p in PROFILES:
                raw = raw_by_profile.get(p.name, {})
                if not all(f in raw for f in files):
                    per[group][p.name] = None
                    continue
                total = sum(raw[f] for f in files)
                per[group][p.name] = normalised(total, sum(windows[f] for f in files), p)
        out[folder.name] = per
    return out


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_nab_report(
    ev: NabEvaluation,
    published: Published | None = None,
    *,
    compare: Sequence[str] = ("ARTime", "contextOSE", "numenta", "knncad", "windowedGaussian"),
) -> str:
    """Return the plain-text report: per group (all, halves, categories) every profile.

    With ``published``, the standard-profile scores of the ``compare`` detectors follow.
    """
    groups = ev.groups()
    pub: Published = published or {}
    shown = [d for d in compare if d in pub]
    header = ["", "files", "windows", "raises", *(p.name for p in PROFILES)]
    header += [f"{d} (std)" for d in shown]
    rows = [header]
    for group, files in groups.items():
        row = [
            group,
            str(len(files)),
            str(sum(ev.windows[f] for f in files)),
            str(sum(len(ev.detections[f]) for f in files)),
            *(_fmt(ev.total(p.name, files)) for p in PROFILES),
        ]
        row += [_fmt(pub[d][group]["standard"]) for d in shown]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"NAB: {ev.dataset}   rules: {ev.rules}"]
    lines += [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.append(
        "scores normalised as NAB does (null detector 0, perfect 100); a category"
        " without windows has no normalised score ('-'); halves split by a fixed hash of"
        " the file name"
    )
    return "\n".join(lines)
