"""MQTT topic filters: what an adapter subscribes to, and matching topics against them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TopicFilter", "check_filter", "matches"]


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
