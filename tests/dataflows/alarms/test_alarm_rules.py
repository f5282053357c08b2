import pytest

from contract.alarms import Severity
from contract.errors import ConfigError
from dataflows.rules import default_rules, load_rules, parse_duration_us, parse_rules

S = 1_000_000

GOOD = """
version = 1

[defaults]
deadman = "10m"

[[rules]]
id = "room-hot"
kind = "threshold"
device = "room-*"
metric = "temperature"
above = 30
clear = 28
levels = { critical = 40 }
for = "30s"
severity = "major"

[[rules]]
id = "fast-rise"
kind = "rate"
metric = "temp*"
max_rate = 2
window = "1m"

[[rules]]
id = "hot-5m"
kind = "aggregate"
window = "5m/1m"
field = "mean"
metric = "temperature"
above = 26

[[rules]]
id = "stuck"
kind = "flatline"
duration = "10m"
tolerance = 0.01

[[rules]]
id = "impossible"
kind = "range"
metric = "temperature"
low = -40
high = 125

[[rules]]
id = "door-then-warm"
kind = "pattern"
mode = "sequence"
within = "5m"
conditions = [
  { member = "*/door", op = "==", value = 1 },
  { member = "*/temperature", op = ">", value = 8 },
]

[[rules]]
id = "learnt"
kind = "adaptive"
sensor = "plc"
threshold = 8
"""


def test_good_file_parses(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(GOOD)
    rules = load_rules(path)
    ids = [r.id for r in rules.rules]
    assert ids == [
        "room-hot",
        "fast-rise",
        "hot-5m",
        "stuck",
        "impossible",
        "door-then-warm",
        "learnt",
        "deadman",
    ]
    hot = rules.by_id["room-hot"]
    assert hot.for_ == 30 * S
    assert hot.severity is Severity.MAJOR
    assert hot.level_pairs() == [(30.0, Severity.MAJOR), (40.0, Severity.CRITICAL)]
    assert rules.by_id["deadman"].silence == 600 * S
    series = [r.id for r in rules.for_series("s", "room-1", "env", "temperature")]
    assert series == ["room-hot", "fast-rise", "stuck", "impossible"]
    assert [r.id for r in rules.for_series("s", "press", "plc", "power")] == ["stuck", "learnt"]
    assert [r.id for r in rules.for_aggregate("s", "d", "env", "temperature", "5m/1m")] == [
        "hot-5m"
    ]
    assert rules.for_aggregate("s", "d", "env", "temperature", "10s") == ()
    assert [r.id for r in rules.for_device("s", "d")] == ["door-then-warm", "deadman"]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"rules": [{"id": "a", "kind": "threshold", "above": 3, "clear": 5}]}, "rules[0].clear"),
        ({"rules": [{"id": "a", "kind": "threshold"}]}, "rules[0].above"),
        ({"rules": [{"id": "a", "kind": "nope"}]}, "rules[0].kind"),
        ({"rules": [{"id": "a", "kind": "rate", "max_rate": -1}]}, "rules[0].max_rate"),
        ({"rules": [{"id": "a", "kind": "flatline", "duration": "5x"}]}, "rules[0].duration"),
        ({"rules": [{"id": "a", "kind": "adaptive", "clear": 9}]}, "rules[0].clear"),
        ({"rules": [{"id": "a", "kind": "range", "low": 5, "high": 1}]}, "rules[0].low"),
        ({"rules": [{"kind": "offline"}]}, "rules[0].id"),
        ({"rules": [{"id": "a", "kind": "offline", "colour": "red"}]}, "rules[0].colour"),
        ({"rules": [{"id": "a", "kind": "offline", "severity": "bad"}]}, "rules[0].severity"),
        (
            {"rules": [{"id": "a", "kind": "threshold", "above": 1, "levels": {"critical": 0}}]},
            "rules[0].levels.critical",
        ),
        (
            {"rules": [{"id": "a", "kind": "pattern", "conditions": [{"member": "x", "op": "~"}]}]},
            "rules[0].conditions[0].op",
        ),
        ({"defaults": {"deadman": "soon"}}, "defaults.deadman"),
        ({"rules": [{"id": "a", "kind": "deadman", "silence": "never"}]}, "rules[0].silence"),
        ({"rules": [{"id": "a", "kind": "deadman", "factor": 0.5}]}, "rules[0].factor"),
        ({"rules": [{"id": "a", "kind": "offline", "max_raises": -1}]}, "rules[0].max_raises"),
        ({"version": 2}, "version"),
    ],
)
def test_bad_config_is_refused_naming_the_field(doc, field):
    with pytest.raises(ConfigError) as info:
        parse_rules(doc)
    assert info.value.field == field


def test_duplicate_ids_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="unique"):
        parse_rules({"rules": [{"id": "a", "kind": "offline"}, {"id": "a", "kind": "offline"}]})
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rules]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_rules(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_rules(tmp_path / "missing.toml")


def test_default_rules_without_a_file():
    rules = load_rules(None)
    assert {r.kind for r in rules.rules} == {"anomaly", "deadman", "offline"}
    assert [r.kind for r in rules.for_series("any", "dev", "s", "m")] == ["anomaly"]
    assert {r.kind for r in rules.for_device("any", "dev")} == {"deadman", "offline"}
    deadman = default_rules().by_id["deadman"]
    assert deadman.silence == "auto"
    assert (deadman.factor, deadman.min_silence) == (3.0, 30 * S)
    assert deadman.shortest_us == 30 * S


def test_deadman_silence_auto_or_fixed_and_the_defaults_table():
    auto = parse_rules({"defaults": {"deadman": True}}).by_id["deadman"]
    assert auto.auto
    also = parse_rules({"defaults": {"deadman": "auto"}}).by_id["deadman"]
    assert also.auto
    fixed = parse_rules({"defaults": {"deadman": "5m"}}).by_id["deadman"]
    assert (fixed.auto, fixed.silence, fixed.shortest_us) == (False, 300 * S, 300 * S)
    assert parse_rules({"defaults": {"deadman": False}}).by_id.get("deadman") is None
    rule = parse_rules(
        {
            "rules": [
                {
                    "id": "quiet",
                    "kind": "deadman",
                    "factor": 5,
                    "min_silence": "1m",
                    "initial_silence": "2h",
                }
            ]
        }
    ).by_id["quiet"]
    assert (rule.silence, rule.factor, rule.min_silence, rule.initial_silence) == (
        "auto",
        5.0,
        60 * S,
        7200 * S,
    )


def test_raise_rate_limit_is_part_of_every_rules_policy():
    policy = default_rules().by_id["anomaly"].policy()
    assert (policy.max_raises, policy.raise_window_us) == (6, 3600 * S)
    custom = parse_rules(
        {"rules": [{"id": "a", "kind": "offline", "max_raises": 2, "raise_window": "10m"}]}
    ).by_id["a"]
    assert (custom.policy().max_raises, custom.policy().raise_window_us) == (2, 600 * S)


def test_durations():
    assert parse_duration_us("500ms") == 500_000
    assert parse_duration_us("1.5h") == 5400 * S
    assert parse_duration_us(2) == 2 * S
    with pytest.raises(ValueError, match="negative"):
        parse_duration_us(-1)
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration_us(True)


def test_disabled_rules_are_left_out():
    rules = parse_rules({"rules": [{"id": "a", "kind": "offline", "enabled": False}]})
    assert rules.rules == ()
