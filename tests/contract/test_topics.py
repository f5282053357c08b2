import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import ID_MAX_LENGTH, TopicError, TopicKind, TopicScheme, check_id

# Ids: anything but / + # $, control characters, and a trailing backslash.
ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/+#$"),
    min_size=1,
    max_size=ID_MAX_LENGTH,
).filter(lambda s: not s.endswith("\\"))


@given(site=ids, device=ids, kind=st.sampled_from(list(TopicKind)))
def test_build_then_parse_round_trips(site: str, device: str, kind: TopicKind) -> None:
    scheme = TopicScheme("sg/v1")
    parsed = scheme.parse(scheme.device(site, device, kind))
    assert (parsed.site, parsed.device, parsed.kind) == (site, device, kind)


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("a/b", "'/'"),
        ("a+b", "'+'"),
        ("a#", "'#'"),
        ("$SYS", "'$'"),
        ("a\nb", "'\\n'"),
        ("trailing\n", "'\\n'"),
        ("a\x00b", "'\\x00'"),
        ("a\x85b", "'\\x85'"),
        ("", "must not be empty"),
        ("x" * (ID_MAX_LENGTH + 1), f"at most {ID_MAX_LENGTH}"),
        ("ends\\", "backslash"),
    ],
)
def test_bad_ids_are_refused_with_the_reason(bad: str, needle: str) -> None:
    with pytest.raises(TopicError, match=None) as info:
        TopicScheme().telemetry("site", bad)
    assert needle in str(info.value)
    assert "device id" in str(info.value)


def test_non_string_id_is_refused() -> None:
    with pytest.raises(TopicError, match="must be a string; got int"):
        check_id("site", 42)


def test_prefix_is_validated() -> None:
    with pytest.raises(TopicError, match="topic prefix level"):
        TopicScheme("sg/+/v1")
    with pytest.raises(TopicError, match="must not be empty"):
        TopicScheme("sg//v1")


def test_topics_follow_the_scheme() -> None:
    scheme = TopicScheme("acme/sg/v1")
    assert scheme.telemetry("plant-1", "pi 7") == "acme/sg/v1/plant-1/pi 7/telemetry"
    assert scheme.status("s", "d") == "acme/sg/v1/s/d/status"
    assert scheme.alarms("s", "d") == "acme/sg/v1/s/d/alarms"
    assert scheme.config("s", "d") == "acme/sg/v1/s/d/config"
    assert scheme.deadletter == "acme/sg/v1/_gateway/deadletter"
    assert scheme.subscription(TopicKind.TELEMETRY) == "acme/sg/v1/+/+/telemetry"
    assert (
        scheme.subscription(TopicKind.TELEMETRY, share_group="gw")
        == "$share/gw/acme/sg/v1/+/+/telemetry"
    )


@pytest.mark.parametrize(
    ("topic", "needle"),
    [
        ("other/v1/s/d/telemetry", "expected a topic under 'sg/v1/'"),
        ("sg/v1/s/telemetry", "2 levels after the prefix"),
        ("sg/v1/s/d/x/telemetry", "4 levels after the prefix"),
        ("sg/v1/s/d/bogus", "unknown topic kind 'bogus'"),
        ("sg/v1//d/telemetry", "site id must not be empty"),
    ],
)
def test_parse_refuses_foreign_topics(topic: str, needle: str) -> None:
    with pytest.raises(TopicError) as info:
        TopicScheme().parse(topic)
    assert needle in str(info.value)


def test_the_gateway_s_own_topics_below_a_device() -> None:
    scheme = TopicScheme("acme/sg/v1")
    assert scheme.alarms_active("s", "d") == "acme/sg/v1/s/d/alarms/active"
    assert scheme.aggregates("s", "d", "env", "temp") == "acme/sg/v1/s/d/aggregates/env/temp"
    with pytest.raises(TopicError, match="sensor id 'a/b'"):
        scheme.aggregates("s", "d", "a/b", "temp")
    with pytest.raises(TopicError, match="metric id"):
        scheme.aggregates("s", "d", "env", "#")
