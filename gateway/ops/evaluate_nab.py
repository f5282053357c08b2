"""Numenta Anomaly Benchmark (NAB) scoring of the gateway's detection engine.

A NAB-layout folder holds ``data/<category>/<file>.csv`` (``timestamp,value``, naive
times read as UTC) and ``labels/combined_windows.json`` (anomaly windows per file).
Each file is run through the gateway's own engine (:func:`dataflows.offline.run_offline`,
what ``sensorgate detect`` runs) as one device with one series. Every ``raised`` alarm
event of a rule other than deadman and offline is a detection: it marks the first data
row at or after its event time with score 1.0; every other row scores 0 and the
threshold is 1.0.

Scoring is NAB's own (``calcSweepScore`` and ``calcScoreByThreshold``): the first 15 %
of a file's rows (at most 750) are probationary and not scored; a detection inside a
window earns a weight that falls from about ``tp`` at the window's start to 0 at its
end (a scaled sigmoid), only the best detection of a window counts, a window without
one costs ``fn``; a detection outside every window costs ``fp`` times a weight that
grows from 0 right after a window to 1 three window lengths later (1 before the first
window). Raw scores add up over files and are normalised per profile as NAB does:
``100 * (raw - null) / (perfect - null)`` where the null detector scores ``-fn`` per
window and the perfect one ``tp`` per window.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from contract.alarms import AlarmRaisedEvent
from contract.errors import ConfigError
from dataflows.offline import OfflineEvents, run_offline
from dataflows.rules import RuleSet

__all__ = [
    "IGNORED_KINDS",
    "PROFILES",
    "NabEvaluation",
    "NabFile",
    "Profile",
    "detection_rows",
    "evaluate_nab",
    "file_score",
    "format_nab_report",
    "nab_files",
    "normalised",
    "published_scores",
    "read_nab_file",
    "split_half",
]

IGNORED_KINDS = frozenset({"deadman", "offline"})
"""Rule kinds whose raises are not detections (silence and last will say nothing of values)."""

Published = dict[str, dict[str, dict[str, float | None]]]
"""Detector -> group of files -> profile -> normalised score."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS = uuid.UUID("6f1d2a8e-3c1b-5f0e-9a44-0d5e3c7b2a19")
_PROBATION = 0.15
_PROBATION_MAX = 0.15 * 5000


@dataclass(frozen=True, slots=True)
class Profile:
    """A NAB scoring profile: weights of a true positive, a false negative, a false positive."""

    name: str
    tp: float
    fn: float
    fp: float


PROFILES: tuple[Profile, ...] = (
    Profile("standard", 1.0, 1.0, 0.11),
    Profile("reward_low_FP_rate", 1.0, 1.0, 0.22),
    Profile("reward_low_FN_rate", 1.0, 2.0, 0.11),
)
"""NAB's three profiles (``config/profiles.json``)."""


def _us(when: datetime) -> int:
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _parse_time(text: str) -> int:
    when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return _us(when)


# -- the data ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NabFile:
    """One NAB data file: its name relative to ``data/``, times (µs), values, windows."""

    name: str
    t_us: np.ndarray
    values: np.ndarray
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


# -- NAB's scoring ----------------------------------------------------------------------


def _scaled_sigmoid(position: float) -> float:
    """NAB's scaledSigmoid: about 1 early in a window, 0 at its end, -1 far after it."""
    if position > 3.0:
        return -1.0
    return 2 * (1 / (1 + math.exp(5 * position))) - 1.0


def _sweep(
    t_us: Sequence[int], windows: Sequence[tuple[int, int]], profile: Profile
) -> list[tuple[float, str | None]]:
    """NAB's calcSweepScore: per row its weight and window (``"probationary"`` unscored)."""
    index = {t: i for i, t in enumerate(t_us)}
    pending = list(windows)
    probation = min(math.floor(_PROBATION * len(t_us)), _PROBATION_MAX)
    max_tp = _scaled_sigmoid(-1.0)
    out: list[tuple[float, str | None]] = []
    current: tuple[int, int] | None = None
    cur_right = 0
    cur_width = 0.0
    prev_right: int | None = None
    prev_width = 0.0
    for i, t in enumerate(t_us):
        if pending and t == pending[0][0]:
            current = pending.pop(0)
            cur_right = index[current[1]]
            cur_width = float(cur_right - index[current[0]] + 1)
        name: str | None
        if current is not None:
            weight = _scaled_sigmoid(-(cur_right - i + 1) / cur_width) * profile.tp / max_tp
            name = str(current[0])
        else:
            unit = (
                -1.0
                if prev_right is None
                else _scaled_sigmoid(abs(prev_right - i) / float(prev_width - 1))
            )
            weight = unit * profile.fp
            name = None
        out.append((weight, name if i >= probation else "probationary"))
        if current is not None and t == current[1]:
            prev_right, prev_width, current = i, cur_width, None
    return out


def file_score(
    t_us: Sequence[int],
    scores: Sequence[float],
    windows: Sequence[tuple[int, int]],
    profile: Profile,
    threshold: float = 1.0,
) -> float:
    """Return one file's raw NAB score (NAB's calcScoreByThreshold at ``threshold``)."""
    rows = [
        (s, w, n)
        for s, (w, n) in zip(scores, _sweep(t_us, windows, profile), strict=True)
        if n != "probationary"
    ]
    parts: dict[str | None, float] = {None: 0.0}
    for _, _, name in rows:
        if name is not None:
            parts[name] = -profile.fn
    for s, w, name in sorted(rows, key=lambda r: -r[0]):
        if s < threshold:
            break
        if name is None:
            parts[None] += w
        else:
            parts[name] = max(parts[name], w)
    return sum(parts.values())


def detection_rows(t_us: np.ndarray, detections_us: Iterable[int]) -> np.ndarray:
    """Row scores: 1.0 at the first row at or after each detection's time, else 0."""
    scores = np.zeros(len(t_us))
    rows = np.searchsorted(t_us, np.asarray(list(detections_us), np.int64), side="left")
    scores[rows[rows < len(t_us)]] = 1.0
    return scores


def normalised(raw: float, windows: int, profile: Profile) -> float | None:
    """NAB's normalised score of a raw total over ``windows`` windows (None for none)."""
    if windows == 0:
        return None
    null, perfect = -profile.fn * windows, profile.tp * windows
    return 100 * (raw - null) / (perfect - null)


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
        _us(e.data.event_time)
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

    def as_dict(
        self, published: dict[str, dict[str, dict[str, float | None]]] | None = None
    ) -> Any:
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
) -> dict[str, dict[str, dict[str, float | None]]]:
    """NAB's published detectors (``root/results``) on the same groups of files.

    Returns detector -> group -> profile -> normalised score (None where a file's score
    is missing from the published results).
    """
    out: dict[str, dict[str, dict[str, float | None]]] = {}
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
    published: dict[str, dict[str, dict[str, float | None]]] | None = None,
    *,
    compare: Sequence[str] = ("ARTime", "contextOSE", "numenta", "knncad", "windowedGaussian"),
) -> str:
    """Return the plain-text report: per group (all, halves, categories) every profile.

    With ``published``, the standard-profile scores of the ``compare`` detectors follow.
    """
    groups = ev.groups()
    shown = [d for d in compare if published and d in published]
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
        assert published is not None or not shown
        row += [_fmt(published[d][group]["standard"]) for d in shown]  # type: ignore[index]
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
