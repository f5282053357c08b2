"""The models of a rules file: every rule kind, the ``[defaults]`` table, the file.

Frozen pydantic models with no unknown fields; :func:`~dataflows.rules.parse_rules`
validates a document with :class:`RulesFile` and names the field of any error.
Durations are ``"500ms"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"`` or a number of
seconds, held in microseconds (:func:`parse_duration_us`). docs/alarms.md describes
every kind.
"""

from __future__ import annotations

import fnmatch
import hashlib
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from contract.alarms import Severity
from contract.durations import DURATION_FORMS, parse_duration
from contract.errors import TimeFormatError
from dataflows.alarms import AlarmPolicy

__all__ = [
    "SERIES_KINDS",
    "US",
    "AdaptiveRule",
    "AggregateRule",
    "AnomalyRule",
    "DeadmanRule",
    "FieldError",
    "FlatlineRule",
    "OfflineRule",
    "PatternCondition",
    "PatternRule",
    "RangeRule",
    "RateRule",
    "Rule",
    "RulesFile",
    "ThresholdRule",
    "parse_duration_us",
    "rule_fingerprint",
]

US = 1_000_000


def parse_duration_us(value: object) -> int:
    """Parse a duration (``"30s"``, ``"5m"``, ``"1.5h"``) or a number of seconds into µs.

    Strings follow the project's one grammar (:func:`contract.durations.parse_duration`);
    a TOML number is seconds.
    """
    if isinstance(value, bool):
        raise TimeFormatError(f"expected a duration like {DURATION_FORMS}; got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
        if seconds < 0:
            raise ValueError(f"a duration cannot be negative; got {value}")
        return round(seconds * US)
    if isinstance(value, str):
        return parse_duration(value) // timedelta(microseconds=1)
    raise TimeFormatError(f"expected a duration like {DURATION_FORMS}; got {value!r}")


Duration = Annotated[int, BeforeValidator(parse_duration_us)]
"""A duration in microseconds, written in TOML as ``"30s"`` or seconds."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class _RuleBase(_Model):
    id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^/+#$\s]+$")]
    site: str = "*"
    device: str = "*"
    sensor: str = "*"
    metric: str = "*"
    severity: Severity = Severity.WARNING
    for_: Annotated[Duration, Field(alias="for")] = 0
    clear_for: Duration = 0
    min_duration: Duration = 0
    flap_count: Annotated[int, Field(ge=0, le=1000)] = 4
    flap_window: Duration = 600 * US
    max_raises: Annotated[int, Field(ge=0, le=100_000)] = 6
    """Alarms a series (or device) may raise per rule within ``raise_window`` (0: no
    limit); beyond it the last alarm is held and further occurrences are counted in it."""
    raise_window: Annotated[Duration, Field(gt=0)] = 3600 * US
    enabled: bool = True
    description: str = ""

    def policy(self) -> AlarmPolicy:
        """Return the alarm timing of this rule."""
        kind: str = getattr(self, "kind", "")
        return AlarmPolicy(
            severity=self.severity,
            kind=kind,
            for_us=self.for_,
            clear_for_us=self.clear_for,
            min_duration_us=self.min_duration,
            flap_count=self.flap_count,
            flap_window_us=self.flap_window,
            max_raises=self.max_raises,
            raise_window_us=self.raise_window,
        )

    def matches_device(self, site: str, device: str) -> bool:
        """Whether the rule's site and device patterns select this device."""
        return fnmatch.fnmatchcase(site, self.site) and fnmatch.fnmatchcase(device, self.device)

    def matches(self, site: str, device: str, sensor: str, metric: str) -> bool:
        """Whether the rule's patterns select this series."""
        return (
            self.matches_device(site, device)
            and fnmatch.fnmatchcase(sensor, self.sensor)
            and fnmatch.fnmatchcase(metric, self.metric)
        )


class _Levels(_RuleBase):
    above: float | None = None
    below: float | None = None
    clear: float | None = None
    levels: dict[Severity, float] = Field(default_factory=dict)
    """More severe levels beyond the raising one, e.g. ``{ critical = 40 }``."""

    @model_validator(mode="after")
    def _one_side(self) -> _Levels:
        if (self.above is None) == (self.below is None):
            raise FieldError("above", "give exactly one of 'above' and 'below'")
        level = self.above if self.above is not None else self.below
        assert level is not None
        if self.clear is not None:
            if self.above is not None and self.clear > self.above:
                raise FieldError("clear", f"must be at or below 'above' ({self.above})")
            if self.below is not None and self.clear < self.below:
                raise FieldError("clear", f"must be at or above 'below' ({self.below})")
        for sev, value in self.levels.items():
            if (self.above is not None and value < level) or (
                self.below is not None and value > level
            ):
                raise FieldError(f"levels.{sev.value}", "must be beyond the raising level")
        return self

    def level_pairs(self) -> list[tuple[float, Severity]]:
        """(level, severity) pairs, the raising level first."""
        level = self.above if self.above is not None else self.below
        assert level is not None
        return [(level, self.severity), *((v, s) for s, v in self.levels.items())]


class FieldError(ValueError):
    """A cross-field check that names the field at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ThresholdRule(_Levels):
    """A reading above (or below) a level, cleared at ``clear`` (hysteresis)."""

    kind: Literal["threshold"]


class AggregateRule(_Levels):
    """A field of a closed window's aggregate above or below a level."""

    kind: Literal["aggregate"]
    window: str = "*"
    """The window name (glob), as configured for the gateway: ``10s``, ``1m``, ``5m/1m``."""
    field: Literal["mean", "min", "max", "stddev", "count", "first", "last", "spread"] = "mean"


class RateRule(_RuleBase):
    """Rate of change beyond ``max_rate`` (per second, or over ``window``)."""

    kind: Literal["rate"]
    max_rate: Annotated[float, Field(gt=0)]
    window: Duration | None = None
    direction: Literal["both", "up", "down"] = "both"


class FlatlineRule(_RuleBase):
    """A stuck sensor: no variation beyond ``tolerance`` for ``duration``."""

    kind: Literal["flatline"]
    duration: Annotated[Duration, Field(gt=0)]
    tolerance: Annotated[float, Field(ge=0)] = 0.0


class RangeRule(_RuleBase):
    """Physically impossible values outside ``[low, high]``, and readings with a fault."""

    kind: Literal["range"]
    low: float | None = None
    high: float | None = None
    faults: bool = True
    severity: Severity = Severity.MAJOR

    @model_validator(mode="after")
    def _bounds(self) -> RangeRule:
        if self.low is None and self.high is None and not self.faults:
            raise ValueError("give 'low', 'high' or faults = true")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise FieldError("low", f"{self.low} is above high {self.high}")
        return self


def _silence(value: object) -> int | str:
    if value == "auto":
        return "auto"
    try:
        us = parse_duration_us(value)
    except ValueError:
        raise ValueError(f'expected "auto" or a duration like 30s or 5m; got {value!r}') from None
    if us <= 0:
        raise ValueError(f"a silence must be longer than 0 s; got {value!r}")
    return us


Silence = Annotated[int | Literal["auto"], BeforeValidator(_silence)]
"""``"auto"`` (learnt from the device's cadence) or a fixed duration in microseconds."""


class DeadmanRule(_RuleBase):
    """Silence: the device (``scope = "device"``) or a series sent nothing for too long.

    ``silence = "auto"`` (the default) follows each device's (or series') own cadence:
    ``factor`` times the median of its last intervals between arrivals, at least
    ``min_silence``; until the first interval is known, ``initial_silence``. A fixed
    ``silence = "5m"`` applies to every device alike.
    """

    kind: Literal["deadman"]
    silence: Silence = "auto"
    factor: Annotated[float, Field(ge=1, le=1000, allow_inf_nan=False)] = 3.0
    """Auto: silence allowed, in median intervals."""
    min_silence: Annotated[Duration, Field(gt=0)] = 30 * US
    """Auto: the floor of the silence (a fast device still gets this long)."""
    initial_silence: Annotated[Duration, Field(gt=0)] = 86_400 * US
    """Auto: the silence allowed before the device's first interval is known."""
    scope: Literal["device", "series"] = "device"
    severity: Severity = Severity.MAJOR

    @property
    def auto(self) -> bool:
        """Whether the silence is learnt from the cadence."""
        return self.silence == "auto"

    @property
    def shortest_us(self) -> int:
        """The shortest silence this rule can ever allow (its floor when auto)."""
        return self.min_silence if self.silence == "auto" else int(self.silence)


class OfflineRule(_RuleBase):
    """The device's last will (device offline), cleared when it is back."""

    kind: Literal["offline"]
    severity: Severity = Severity.MAJOR


class PatternCondition(_Model):
    """One condition of a pattern: ``member`` glob, ``op`` and ``value``."""

    member: str
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    value: float


class PatternRule(_RuleBase):
    """Conditions combined across a device's series or a site's devices within ``within``."""

    kind: Literal["pattern"]
    scope: Literal["device", "site"] = "device"
    mode: Literal["all", "any", "sequence", "count"] = "all"
    within: Annotated[Duration, Field(gt=0)] = 60 * US
    count: Annotated[int, Field(ge=1, le=1024)] = 2
    conditions: Annotated[list[PatternCondition], Field(min_length=1, max_length=32)]


class AdaptiveRule(_RuleBase):
    """The adaptive (learnt, robust) anomaly detector."""

    kind: Literal["adaptive"]
    threshold: Annotated[float, Field(gt=0)] = 6.0
    clear: Annotated[float, Field(gt=0)] = 3.0
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.01
    warmup: Annotated[int, Field(ge=2)] = 60
    season: Annotated[Duration, Field(gt=0)] = 86_400 * US
    """The season of the seasonal level (1d); used after two seasons of history."""
    season_buckets: Annotated[int, Field(ge=0, le=1440)] = 24
    """Phase buckets per season (24: hourly); 0 turns seasons off."""
    hold: Annotated[int, Field(ge=0)] | None = None
    """Readings an anomaly is learnt ten times slower (default 3/alpha); then it is learnt."""

    @model_validator(mode="after")
    def _clear_below(self) -> AdaptiveRule:
        if self.clear > self.threshold:
            raise FieldError("clear", f"must be at or below threshold ({self.threshold})")
        return self


class AnomalyRule(_RuleBase):
    """The default anomaly detector: prediction, new extremes, likelihood, level shift, stuck.

    Every field has a default; the defaults are the one configuration used for every
    series (``dataflows.detectors.anomaly``).
    """

    kind: Literal["anomaly"]
    spike: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 6.0
    """Prediction error (RMS sigmas, seasonal) that fires."""
    spike_robust: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 10.0
    """... and the robust sigmas it must also exceed."""
    likelihood: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 8.0
    """Standard deviations of the short error average above its history that fire."""
    shift: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 6.0
    """Standard deviations of the signed error and baseline-distance averages that fire."""
    clear: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 2.0
    """Standard deviations of the baseline distance below which the condition ends."""
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    """Learning rate of the predicted level."""
    history: Annotated[float, Field(gt=0, lt=1)] = 0.002
    """Learning rate of the error history (~1/history readings)."""
    warmup: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    hold: Duration = 600 * US
    """Longest an alarm is held (event time) while the level stays away; then it is learnt."""
    refractory: Annotated[int, Field(ge=0, le=1_000_000)] = 100
    """Readings after an alarm during which only a larger anomaly raises again."""
    rearm: Annotated[float, Field(ge=1, le=1000)] = 3.0
    """How much larger (score ratio) an anomaly must be to raise within ``refractory``."""
    season: Annotated[Duration, Field(gt=0)] = 86_400 * US
    season_buckets: Annotated[int, Field(ge=0, le=48)] = 24
    """Phase buckets of the seasonal error scale (24: hourly); 0 turns it off."""


Rule = Annotated[
    ThresholdRule
    | AggregateRule
    | RateRule
    | FlatlineRule
    | RangeRule
    | DeadmanRule
    | OfflineRule
    | PatternRule
    | AdaptiveRule
    | AnomalyRule,
    Field(discriminator="kind"),
]
"""Any rule, told apart by ``kind``."""

SERIES_KINDS = ("threshold", "rate", "flatline", "range", "adaptive", "anomaly")


def _default_deadman(value: object) -> int | str | None:
    if value is False or value is None:
        return None
    if value is True:
        return "auto"
    return _silence(value)


class _Defaults(_Model):
    anomaly: bool = False
    adaptive: bool = False
    deadman: Annotated[int | Literal["auto"] | None, BeforeValidator(_default_deadman)] = None
    """``"auto"`` (or true): silence learnt per device; ``"5m"``: fixed; false: none."""
    offline: bool = False


class RulesFile(_Model):
    """A whole rules file: its version, the ``[defaults]`` table and the rules."""

    version: Literal[1] = 1
    defaults: _Defaults = Field(default_factory=_Defaults)
    rules: list[Rule] = Field(default_factory=list)


def rule_fingerprint(rule: Rule) -> str:
    """Return a short hash of a rule's whole definition (a changed rule starts fresh)."""
    return hashlib.sha1(rule.model_dump_json().encode(), usedforsecurity=False).hexdigest()[:16]
