"""MQTT topic filters: what an adapter subscribes to, and matching topics against them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TopicFilter", "check_filter", "covers", "matches"]


@dataclass(frozen=True, slots=True)
class TopicFilter:
    """One subscription an adapter needs.

    ``shared`` False means: subscribe without ``$share/``, on one source partition only
    (as the gateway does for ``.../status``). MQTT 5 sends no retained message to a
    shared subscription, and some topics *are* retained state (Home Assistant discovery
    configs, availability, last wills); Sparkplug B needs one ordered stream per edge
    node for its ``seq`` check. ``why`` says which of these applies.
    """

    filter: str
    shared: bool = True
    why: str = ""


def check_filter(text: str) -> str:
    """Return ``text`` if it is a valid MQTT topic filter, else raise ``ValueError``."""
    if not text:
        raise ValueError("a topic filter must not be empty")
    if "\x00" in text:
        raise ValueError(f"topic filter {text!r} contains a NUL character")
    levels = text.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"'#' must be a whole last level in topic filter {text!r}")
        if "+" in level and level != "+":
            raise ValueError(f"'+' must be a whole level in topic filter {text!r}")
    return text


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter`` (MQTT 3.1.1 §4.7 rules)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, level in enumerate(f_levels):
        if level == "#":
            return True
        if i >= len(t_levels):
            return False
        if level != "+" and level != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


def covers(outer: str, inner: str) -> bool:
    """Whether every topic matching filter ``inner`` also matches filter ``outer``.

    Two subscriptions of one client where one covers the other deliver a message
    twice (MQTT 5 allows a copy per matching subscription, and mosquitto sends them).
    """
    o_levels, i_levels = outer.split("/"), inner.split("/")
    for i, level in enumerate(o_levels):
        if level == "#":
            return True
        if i >= len(i_levels) or i_levels[i] == "#":
            return False
        if level != "+" and (i_levels[i] == "+" or level != i_levels[i]):
            return False
    return len(o_levels) == len(i_levels)
