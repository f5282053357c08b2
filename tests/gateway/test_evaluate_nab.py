import importlib.util
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from dataflows.rules import default_rules, parse_rules
from gateway.cli.detection import DEFAULT_NAB, main
from gateway.ops.evaluate_nab import (
    _windows,
    evaluate_nab,
    nab_files,
    published_scores,
    read_nab_file,
    split_half,
)
from gateway.ops.nab_score import PROFILES, detection_rows, file_score, normalised

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "../shared/tools/nab_score.py"
NAB = REPO / "../shared/datasets/nab-dev"


def reference():
    if not REFERENCE.exists():
        pytest.fail(f"the reference scorer is missing: expected {REFERENCE.resolve()}")
    spec = importlib.util.spec_from_file_location("nab_score_reference", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def naive(t_us):
    # The reference compares naive datetimes (NAB's timestamps read as UTC).
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(t_us))
    return when.replace(tzinfo=None)


# The reference scorer opens files without closing them (a script, not a library).
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_scores_agree_with_the_reference_scorer_on_every_file():
    ref = reference()
    windows = _windows(NAB)
    rng = random.Random(3)
    for profile in PROFILES:
        raw_total = 0.0
        ref_scores = {}
        n_windows = 0
        for name in nab_files(NAB):
            data = read_nab_file(NAB, name, windows)
            # Detections: some at random, some at each window's start, middle and end.
            picks = rng.sample(range(len(data.t_us)), 12)
            for start, end in data.windows:
                picks += [int(np.searchsorted(data.t_us, t)) for t in (start, (start + end) // 2)]
                picks.append(int(np.searchsorted(data.t_us, end)))
            found = [int(data.t_us[min(i, len(data.t_us) - 1)]) - 1 for i in picks]
            scores = detection_rows(data.t_us, found)
            ours = file_score(data.t_us.tolist(), scores, data.windows, profile)
            times = [naive(t) for t in data.t_us.tolist()]
            theirs = ref.file_score(
                ref.sweep(times, scores.tolist(), windows[name], name, profile.tp, profile.fp),
                1.0,
                profile.fn,
            )
            assert ours == pytest.approx(theirs, abs=1e-9), (name, profile.name)
            raw_total += ours
            ref_scores[name] = scores.tolist()
            n_windows += len(data.windows)
        total, _ = ref.score_all(NAB, lambda f, times, s=ref_scores: s[f], 1.0, profile.name)
        assert normalised(raw_total, n_windows, profile) == pytest.approx(total, abs=1e-9)


def test_a_detection_marks_the_first_row_at_or_after_it():
    t = np.array([10, 20, 30], np.int64)
    assert detection_rows(t, [5, 20, 21, 31]).tolist() == [1.0, 1.0, 1.0]
    assert detection_rows(t, [31]).tolist() == [0.0, 0.0, 0.0]
    assert detection_rows(t, []).tolist() == [0.0, 0.0, 0.0]


def test_halves_are_a_fixed_split_across_categories():
    names = nab_files(NAB)
    halves = {split_half(n) for n in names}
    assert halves == {"A", "B"}
    a = [n for n in names if split_half(n) == "A"]
    assert 15 <= len(a) <= 32
    assert split_half("realTweets/Twitter_volume_AMZN.csv") == split_half(
        "x/Twitter_volume_AMZN.csv"
    )


def test_published_scores_match_the_reference_figures():
    ev_groups = {"all": nab_files(NAB)}
    windows = {n: len(w) for n, w in _windows(NAB).items()}
    published = published_scores(NAB, ev_groups, windows)
    assert published["numenta"]["all"]["standard"] == pytest.approx(72.2, abs=0.05)
    assert published["ARTime"]["all"]["standard"] == pytest.approx(75.4, abs=0.05)
    assert published["null"]["all"]["standard"] == pytest.approx(0.0, abs=1e-9)


def write_layout(root: Path):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    windows = {}
    for name, jump in (("cat/one.csv", 500), ("cat/two.csv", None)):
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["timestamp,value"]
        for i in range(1000):
            value = 10.0 + (i % 3) * 0.1 + (50.0 if jump is not None and i >= jump else 0.0)
            lines.append(f"{(start + timedelta(minutes=5 * i)).isoformat(sep=' ')[:19]},{value}")
        path.write_text("\n".join(lines) + "\n")
        windows[name] = (
            []
            if jump is None
            else [
                [
                    (start + timedelta(minutes=5 * (jump - 20))).isoformat(sep=" ")[:19],
                    (start + timedelta(minutes=5 * (jump + 20))).isoformat(sep=" ")[:19],
                ]
            ]
        )
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))


def test_evaluate_nab_cli_writes_json_and_charts(tmp_path, capsys):
    write_layout(tmp_path / "nab")
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[defaults]\ndeadman = "1m"\noffline = true\n'
        '[[rules]]\nid = "high"\nkind = "threshold"\nabove = 40\n'
    )
    out = tmp_path / "report.json"
    charts = tmp_path / "charts"
    argv = ["evaluate", "--nab", str(tmp_path / "nab"), "--rules", str(rules)]
    assert main([*argv, "--out", str(out), "--charts", str(charts)]) == 0
    text = capsys.readouterr().out
    assert "standard" in text
    assert "reward_low_FP_rate" in text
    report = json.loads(out.read_text())
    # One raise at the jump (the threshold rule); deadman raises (1m silence between
    # 5-minute rows) are not counted.
    assert report["files"]["cat/one.csv"]["detections"] == 1
    assert report["files"]["cat/two.csv"]["detections"] == 0
    # Detected at the middle of its window: NAB's scaled sigmoid there.
    one = report["files"]["cat/one.csv"]["raw"]["standard"]
    assert one == pytest.approx(2 / (1 + np.exp(-5 * 20 / 41)) - 1, abs=0.05)
    assert report["scores"]["all"]["standard"] == pytest.approx(100 * (one + 1) / 2)
    assert sorted(p.name for p in charts.iterdir()) == ["cat-one.png", "cat-two.png"]
    assert all(p.stat().st_size > 5_000 for p in charts.iterdir())


def test_default_nab_path_is_next_to_the_repository():
    assert DEFAULT_NAB.resolve() == NAB.resolve()


def test_default_rules_on_two_nab_files_through_the_engine():
    names = {"realKnownCause/ec2_request_latency_system_failure.csv", "realTraffic/speed_7578.csv"}
    ev = evaluate_nab(NAB, default_rules(), only=names.__contains__)
    assert set(ev.files) == names
    for name in names:
        assert 0 < len(ev.detections[name]) < 40
    assert ev.total("standard") > 40


def test_deadman_and_offline_raises_are_not_detections(tmp_path):
    write_layout(tmp_path / "nab")
    rules = parse_rules({"defaults": {"deadman": "1m", "offline": True}})
    ev = evaluate_nab(tmp_path / "nab", rules)
    assert ev.detections == {"cat/one.csv": [], "cat/two.csv": []}
    assert ev.total("standard") == 0.0
