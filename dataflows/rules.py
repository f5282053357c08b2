"""Alarm rules: TOML loading, matching series, and the defaults.

The models of every rule kind are in :mod:`dataflows.rule_kinds`.

A rules file is TOML: an optional ``[defaults]`` table and a list of ``[[rules]]``.
Every rule has an ``id`` (unique), a ``kind``, the glob patterns ``site``, ``device``,
``sensor`` and ``metric`` (default ``*``) that select the series it watches, a
``severity``, and the alarm timing ``for``, ``clear_for``, ``min_duration``,
``flap_count``, ``flap_window`` and the raise rate limit ``max_raises`` per
``raise_window`` (6 an hour by default). Durations are ``"500ms"``, ``"30s"``, ``"5m"``,
``"1h"``, ``"1d"`` or a number of seconds. See docs/alarms.md for every kind.

With no rules file, :func:`default_rules` applies: every numeric series gets the
anomaly detector and every device a deadman (its silence learnt from the device's
cadence: ``silence = "auto"``) and an offline rule.

Errors are :class:`~contract.errors.ConfigError` naming the field, e.g.
``rules[2].clear``.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from contract.errors import ConfigError
from dataflows.rule_kinds import (
    SERIES_KINDS,
    US,
    AdaptiveRule,
    AggregateRule,
    AnomalyRule,
    DeadmanRule,
    FieldError,
    FlatlineRule,
    OfflineRule,
    PatternCondition,
    PatternRule,
    RangeRule,
    RateRule,
    Rule,
    RulesFile,
    ThresholdRule,
    parse_duration_us,
)

__all__ = [
    "AdaptiveRule",
    "AggregateRule",
    "AnomalyRule",
    "DeadmanRule",
    "FlatlineRule",
    "OfflineRule",
    "PatternCondition",
    "PatternRule",
    "RangeRule",
    "RateRule",
    "Rule",
    "RuleSet",
    "RulesSource",
    "StaticRules",
    "ThresholdRule",
    "default_rules",
    "load_rules",
    "parse_duration_us",
    "parse_rules",
]


class RuleSet:
    """A validated set of rules with cached matching."""

    def __init__(self, rules: list[Rule], *, source: str = "rules") -> None:
        self.rules: tuple[Rule, ...] = tuple(r for r in rules if r.enabled)
        self.source = source
        ids = [r.id for r in rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ConfigError("rules.id", f"rule ids must be unique; repeated: {dupes}")
        self._series: dict[tuple[str, str, str, str], tuple[Rule, ...]] = {}
        self._aggregates: dict[tuple[str, str, str, str, str], tuple[AggregateRule, ...]] = {}
        self._devices: dict[tuple[str, str], tuple[Rule, ...]] = {}

    @cached_property
    def by_id(self) -> dict[str, Rule]:
        """Rules by id."""
        return {r.id: r for r in self.rules}

    def for_series(self, site: str, device: str, sensor: str, metric: str) -> tuple[Rule, ...]:
        """Series rules (threshold, rate, flatline, range, adaptive, series deadman)."""
        key = (site, device, sensor, metric)
        found = self._series.get(key)
        if found is None:
            found = tuple(
                r
                for r in self.rules
                if (r.kind in SERIES_KINDS or (r.kind == "deadman" and r.scope == "series"))
                and r.matches(*key)
            )
            if len(self._series) > 100_000:
                self._series.clear()
            self._series[key] = found
        return found

    def for_aggregate(
        self, site: str, device: str, sensor: str, metric: str, window: str
    ) -> tuple[AggregateRule, ...]:
        """Aggregate rules that select this series and window."""
        key = (site, device, sensor, metric, window)
        found = self._aggregates.get(key)
        if found is None:
            found = tuple(
                r
                for r in self.rules
                if r.kind == "aggregate"
                and r.matches(site, device, sensor, metric)
                and fnmatch.fnmatchcase(window, r.window)
            )
            if len(self._aggregates) > 100_000:
                self._aggregates.clear()
            self._aggregates[key] = found
        return found

    def for_device(self, site: str, device: str) -> tuple[Rule, ...]:
        """Device-level rules: device deadman, offline, device-scope patterns."""
        found = self._devices.get((site, device))
        if found is None:
            found = tuple(
                r
                for r in self.rules
                if (
                    (r.kind == "deadman" and r.scope == "device")
                    or r.kind == "offline"
                    or (r.kind == "pattern" and r.scope == "device")
                )
                and r.matches_device(site, device)
            )
            if len(self._devices) > 100_000:
                self._devices.clear()
            self._devices[(site, device)] = found
        return found

    def site_patterns(self, site: str) -> tuple[PatternRule, ...]:
        """Site-scope pattern rules for ``site``."""
        return tuple(
            r
            for r in self.rules
            if r.kind == "pattern" and r.scope == "site" and fnmatch.fnmatchcase(site, r.site)
        )


def _field_name(loc: tuple[int | str, ...], doc: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and ("[" in part or "(" in part):
            continue  # a union member's tag, not a field
        if isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]" if parts else f"[{part}]"
        elif (
            i == 2
            and loc[0] == "rules"
            and part
            in (
                "threshold",
                "aggregate",
                "rate",
                "flatline",
                "range",
                "deadman",
                "offline",
                "pattern",
                "adaptive",
                "anomaly",
            )
        ):
            continue  # the union's tag adds nothing
        else:
            parts.append(str(part))
    return ".".join(parts) or "rules"


def parse_rules(doc: Mapping[str, Any], *, source: str = "rules") -> RuleSet:
    """Validate a parsed rules document; raise ConfigError naming the field at fault."""
    try:
        parsed = RulesFile.model_validate(dict(doc))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = tuple(err["loc"])
        field = _field_name(loc, doc)
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, FieldError):
            field = f"{field}.{ctx_error.field}" if field != "rules" else ctx_error.field
            reason = ctx_error.reason
        else:
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                field = f"{field}.kind"
            reason = err["msg"]
            if err["type"] not in ("missing", "union_tag_invalid", "union_tag_not_found"):
                reason += f" (got {err.get('input')!r:.80})"
        more = exc.error_count() - 1
        if more:
            reason += f"; and {more} more error(s)"
        raise ConfigError(field, f"{source}: {reason}") from None
    rules: list[Rule] = list(parsed.rules)
    defaults = parsed.defaults
    taken = {r.id for r in rules}
    if defaults.anomaly and "anomaly" not in taken:
        rules.append(AnomalyRule(id="anomaly", kind="anomaly"))
    if defaults.adaptive and "adaptive" not in taken:
        rules.append(AdaptiveRule(id="adaptive", kind="adaptive"))
    if defaults.deadman is not None and "deadman" not in taken:
        silence = defaults.deadman if defaults.deadman == "auto" else defaults.deadman / US
        rules.append(DeadmanRule(id="deadman", kind="deadman", silence=silence))
    if defaults.offline and "offline" not in taken:
        rules.append(OfflineRule(id="offline", kind="offline"))
    return RuleSet(rules, source=source)


def load_rules(path: Path | str | None) -> RuleSet:
    """Load a rules TOML file; with None, return :func:`default_rules`."""
    if path is None:
        return default_rules()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("rules", f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("rules", f"{path} is not valid TOML: {exc}") from None
    return parse_rules(doc, source=str(path))


def default_rules(*, deadman: str = "auto") -> RuleSet:
    """Every numeric series: the anomaly detector; every device: deadman and offline.

    The deadman's silence follows each device's cadence (``"auto"``): three times its
    median interval between arrivals, at least 30 s.
    """
    return parse_rules(
        {"defaults": {"anomaly": True, "deadman": deadman, "offline": True}}, source="defaults"
    )


class RulesSource(Protocol):
    """Where the shard gets its rules; ``version`` changes when they do."""

    def current(self) -> tuple[int, RuleSet]:
        """Return (version, rules); cheap, called on every batch and timer."""


class StaticRules:
    """Rules that never change (tests, replays)."""

    def __init__(self, rules: RuleSet | None = None) -> None:
        self._rules = rules or default_rules()

    def current(self) -> tuple[int, RuleSet]:
        """Return version 0 and the rules."""
        return 0, self._rules
