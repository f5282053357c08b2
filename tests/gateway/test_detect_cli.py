import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contract.alarms import decode_alarm
from gateway.cli.detection import DEFAULT_SKAB, main, register

SKAB = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "skab" / "data"


def run(argv):
    parser = argparse.ArgumentParser(prog="sensorgate")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def write_csv(path: Path, values, start=datetime(2026, 1, 1, tzinfo=UTC)):
    lines = ["timestamp,temperature,humidity"]
    for i, v in enumerate(values):
        t = (start + timedelta(seconds=i)).isoformat()
        lines.append(f"{t},{v},{40 + (i % 3) * 0.1}")
    path.write_text("\n".join(lines) + "\n")


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(["detect", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--csv" in out
    assert "--rules" in out
    with pytest.raises(SystemExit):
        run(["evaluate", "--help"])
    out = capsys.readouterr().out
    assert "--skab" in out
    assert "FAR" in out


def test_detect_with_rules_writes_json_lines_and_a_summary(tmp_path, capsys):
    csv_path = tmp_path / "room.csv"
    write_csv(csv_path, [20.0] * 30 + [35.0] * 5 + [20.0] * 10)
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rules]]\nid = "hot"\nkind = "threshold"\nmetric = "temperature"\n'
        'above = 30\nclear = 25\nfor = "2s"\nseverity = "critical"\n'
    )
    assert run(["detect", "--csv", str(csv_path), "--rules", str(rules), "--site", "lab"]) == 0
    captured = capsys.readouterr()
    events = [decode_alarm(line) for line in captured.out.splitlines()]
    assert [e.type.split(".")[-2] for e in events] == ["raised", "cleared"]
    raised = events[0].data
    assert (raised.site, raised.device, raised.metric, raised.severity.value) == (
        "lab",
        "room",
        "temperature",
        "critical",
    )
    assert raised.event_time == datetime(2026, 1, 1, 0, 0, 32, tzinfo=UTC)  # 2 s after 30
    assert raised.cause_event_id is not None
    assert "hot" in captured.err
    assert "45 events" in captured.err


def test_detect_default_rules_to_a_file(tmp_path, capsys):
    csv_path = tmp_path / "d.csv"
    write_csv(csv_path, [20.0 + 0.01 * (i % 7) for i in range(200)] + [50.0] + [20.0] * 20)
    out = tmp_path / "out" / "alarms.jsonl"
    assert run(["detect", "--csv", str(csv_path), "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert events[0]["type"] == "io.sensorgate.alarm.raised.v1"
    assert events[0]["data"]["rule"] == "anomaly"
    assert events[0]["data"]["event_time"].startswith("2026-01-01T00:03:20")


def test_evaluate_skab_subset_json_and_chart(tmp_path, capsys):
    chart = tmp_path / "skab.png"
    argv = ["evaluate", "--skab", str(SKAB / "valve2"), "--json", "--chart", str(chart)]
    assert run([*argv, "--chart-file", "1.csv"]) == 0
    report = json.loads(capsys.readouterr().out)
    point = report["point"]
    assert set(point) >= {"precision", "recall", "f1", "far", "mar"}
    assert point["tp"] + point["fn"] > 0
    assert len(report["files"]) == 4
    assert report["event"]["events"] == 4
    assert chart.stat().st_size > 10_000


def test_default_skab_path_is_next_to_the_repository():
    assert DEFAULT_SKAB == SKAB


def test_evaluate_simulated_and_from_files(tmp_path, capsys):
    chart = tmp_path / "sim.png"
    argv = ["evaluate", "--simulate", "--devices", "2", "--duration", "7200", "--json"]
    assert run([*argv, "--chart", str(chart)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["event"]["events"] > 0
    assert chart.exists()
    # The same kind of data from files: telemetry JSON lines and simulator labels.
    from gateway.ops.evaluate import simulate_labelled

    telemetry, labels = simulate_labelled(devices=1, duration_s=3600)
    readings = tmp_path / "readings.jsonl"
    readings.write_text(
        "".join(
            e.model_dump_json(exclude_none=True) + "\n" for ev in telemetry.values() for e in ev
        )
    )
    labels_path = tmp_path / "labels.jsonl"
    labels_path.write_text("".join(json.dumps(lb.to_json()) + "\n" for lb in labels))
    argv = ["evaluate", "--readings", str(readings), "--labels", str(labels_path), "--chart", ""]
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "precision" in out
    assert "MAR" in out


def test_bad_rules_file_exits_2_naming_the_field(tmp_path, capsys):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nid = "x"\nkind = "threshold"\nabove = 3\nclear = 5\n')
    csv_path = tmp_path / "d.csv"
    write_csv(csv_path, [1.0, 2.0])
    assert main(["detect", "--csv", str(csv_path), "--rules", str(rules)]) == 2
    assert "rules[0].clear" in capsys.readouterr().err


def test_registers_as_a_sensorgate_plugin(monkeypatch, tmp_path, capsys):
    from gateway.cli import entry as cli

    assert "gateway.cli.detection" in cli._PLUGINS
    csv_path = tmp_path / "p.csv"
    write_csv(csv_path, [20.0] * 5)
    assert cli.main(["detect", "--csv", str(csv_path), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
