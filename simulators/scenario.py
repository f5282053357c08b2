"""Scenario files: a whole simulated fleet described in TOML.

A scenario names device types (a sensor and its metrics, each with a signal model and
its parameters), sites with groups of devices of those types, and the anomalies to
inject. It is loaded into frozen pydantic models; anything wrong is refused with a
:class:`~contract.errors.ConfigError` naming the field and the reason. Example::

    name = "cold-chain"
    seed = 7
    interval_s = 10
    speed = "realtime"          # or "x60", or "max"

    [device_types.freezer]
    sensor = "probe"
    metrics.temperature = { mean = -20, daily_amplitude = 0.5 }
    metrics.door = { opens_per_hour = 4 }

    [[sites]]
    id = "warehouse-1"
    devices = [{ type = "freezer", count = 12 }]

    [[anomalies]]
    kind = "level_shift"
    device = "freezer-0003"
    metric = "temperature"
    at_s = 3600
    duration_s = 1800
    magnitude = 8

    [[random_anomalies]]
    rate_per_hour = 0.2
    kinds = ["spike", "stuck", "dropout"]

A metric's ``model`` defaults to its name, so ``metrics.temperature = {}`` is a
temperature with default parameters.
"""

from __future__ import annotations

import re
import time
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from contract import TopicScheme, check_id
from contract.errors import ConfigError, TopicError
from simulators.anomalies import ALL_METRICS, RandomAnomalies, ScheduledAnomaly
from simulators.signals import MODEL_NAMES, SignalParams
from simulators.sim_device import MetricSpec, SimDevice
from simulators.timebase import parse_speed

__all__ = [
    "SCENARIO_DIR",
    "DeviceGroup",
    "DeviceType",
    "Scenario",
    "Site",
    "build_devices",
    "builtin_scenarios",
    "load_scenario",
    "simple_scenario",
    "validate_scenario",
]

SCENARIO_DIR = Path(__file__).parent / "scenarios"
MAX_DEVICES = 1_000_000


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def _id(kind: str, value: str) -> str:
    try:
        return check_id(kind, value)
    except TopicError as exc:
        raise ValueError(str(exc)) from None


class DeviceType(_Frozen):
    """A kind of device: one sensor and its metrics."""

    sensor: str = "sim"
    metrics: Annotated[dict[str, SignalParams], Field(min_length=1)]

    @field_validator("metrics", mode="before")
    @classmethod
    def _default_model(cls, value: Any) -> Any:
        # `metrics.temperature = {}` means the temperature model with its defaults.
        if isinstance(value, dict):
            out = {}
            for name, params in value.items():
                if isinstance(params, dict) and "model" not in params:
                    if name not in MODEL_NAMES:
                        raise ValueError(
                            f"metric {name!r} needs a 'model' (one of {', '.join(MODEL_NAMES)})"
                        )
                    params = {**params, "model": name}
                out[name] = params
            return out
        return value

    @field_validator("sensor")
    @classmethod
    def _sensor_id(cls, value: str) -> str:
        return _id("sensor", value)

    @field_validator("metrics")
    @classmethod
    def _metric_ids(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            _id("metric", name)
        return value


class DeviceGroup(_Frozen):
    """``count`` devices of one type; ``name`` is a format string of ``n`` (from 0)."""

    type: str
    count: Annotated[int, Field(ge=1, le=MAX_DEVICES)] = 1
    name: str = "{type}-{n:04d}"

    def names(self) -> list[str]:
        """Return the device ids of the group."""
        return [self.name.format(n=n, type=self.type) for n in range(self.count)]

    @model_validator(mode="after")
    def _names_ok(self) -> DeviceGroup:
        try:
            first = self.name.format(n=0, type=self.type)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"name {self.name!r} is not a format string of n and type: {exc}"
            ) from None
        _id("device", first)
        if self.count > 1 and self.name.format(n=1, type=self.type) == first:
            raise ValueError(f"name {self.name!r} gives every device the same id; use {{n}}")
        return self


class Site(_Frozen):
    """A site and the devices it holds."""

    id: str
    devices: Annotated[tuple[DeviceGroup, ...], Field(min_length=1)]

    @field_validator("id")
    @classmethod
    def _site_id(cls, value: str) -> str:
        return _id("site", value)


class Scenario(_Frozen):
    """A whole simulated fleet: device types, sites, timing and anomalies."""

    name: str = "scenario"
    description: str = ""
    seed: int = 0
    interval_s: Annotated[float, Field(gt=0)] = 1.0
    duration_s: Annotated[float, Field(gt=0)] | None = None
    """Simulated seconds; None runs until stopped."""
    speed: str = "realtime"
    """``realtime``, ``xN`` (accelerated) or ``max`` (as fast as possible)."""
    start: AwareDatetime | None = None
    """Event time of the start; see :func:`simulators.timebase.resolve_start`."""
    stagger: bool = True
    """Spread the devices' readings evenly over each interval (else all at once)."""
    connections: Literal["shared", "per-device"] = "shared"
    """How ``sensorgate simulate`` connects the fleet unless ``--connections`` says."""
    device_types: Annotated[dict[str, DeviceType], Field(min_length=1)]
    sites: Annotated[tuple[Site, ...], Field(min_length=1)]
    anomalies: tuple[ScheduledAnomaly, ...] = ()
    random_anomalies: tuple[RandomAnomalies, ...] = ()

    @field_validator("speed")
    @classmethod
    def _speed(cls, value: str) -> str:
        parse_speed(value)
        return value

    @property
    def speed_factor(self) -> float | None:
        """The speed as a number (None: as fast as possible)."""
        return parse_speed(self.speed)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        seen: set[tuple[str, str]] = set()
        total = 0
        for i, site in enumerate(self.sites):
            for j, group in enumerate(site.devices):
                if group.type not in self.device_types:
                    known = ", ".join(sorted(self.device_types))
                    raise ValueError(
                        f"sites[{i}].devices[{j}].type: unknown device type {group.type!r};"
                        f" the scenario defines {known}"
                    )
                for name in group.names():
                    if (site.id, name) in seen:
                        raise ValueError(
                            f"sites[{i}].devices[{j}].name: device {name!r} appears twice in site"
                            f" {site.id!r}"
                        )
                    seen.add((site.id, name))
                total += group.count
        if total > MAX_DEVICES:
            raise ValueError(f"sites: {total} devices; at most {MAX_DEVICES} per scenario")
        metrics = {m for t in self.device_types.values() for m in t.metrics}
        for i, spec in enumerate(self.anomalies):
            if spec.metric != ALL_METRICS and spec.metric not in metrics:
                raise ValueError(
                    f"anomalies[{i}].metric: no device type has a metric {spec.metric!r}"
                    f" (known: {', '.join(sorted(metrics))})"
                )
        return self

    @property
    def device_count(self) -> int:
        """How many devices the scenario runs."""
        return sum(g.count for s in self.sites for g in s.devices)

    def override(self, **changes: Any) -> Scenario:
        """Return a copy with the non-None ``changes`` applied and validated."""
        update = {k: v for k, v in changes.items() if v is not None}
        return validate_scenario({**self.model_dump(), **update}, source="overrides")


def _field(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif len(parts) >= 2 and parts[-2] == ".metrics" and part in MODEL_NAMES:
            continue  # the union's tag repeats the model name of the metric
        else:
            parts.append(f".{part}")
    return "".join(parts).lstrip(".") or "(scenario)"


_LOCATED = re.compile(r"^(?P<field>[A-Za-z_][\w.\[\]]*): (?P<reason>.*)$", re.DOTALL)


def validate_scenario(doc: dict[str, Any], *, source: str = "scenario") -> Scenario:
    """Validate a parsed scenario document; raise :class:`ConfigError` if it is wrong."""
    try:
        return Scenario.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = _field(tuple(err["loc"]))
        reason = err["msg"].removeprefix("Value error, ")
        # Checks across the whole scenario name their field at the head of the message.
        located = _LOCATED.match(reason) if not err["loc"] else None
        if located is not None:
            field, reason = located["field"], located["reason"]
        if (
            err["type"] not in ("missing",)
            and "input" in err
            and not isinstance(err["input"], dict)
        ):
            reason += f" (got {err['input']!r})"
        more = exc.error_count() - 1
        if more:
            reason += f"; and {more} more error(s)"
        raise ConfigError(f"{source}: {field}", reason) from None


def load_scenario(path: Path | str) -> Scenario:
    """Read a scenario TOML file (a path, or the name of a built-in scenario)."""
    candidate = Path(path)
    if not candidate.exists() and (SCENARIO_DIR / f"{path}.toml").exists():
        candidate = SCENARIO_DIR / f"{path}.toml"
    try:
        text = candidate.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("scenario", f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(candidate), f"not valid TOML: {exc}") from None
    return validate_scenario(doc, source=str(candidate))


def builtin_scenarios() -> dict[str, Path]:
    """Return the scenarios shipped with SensorGate, by name."""
    return {p.stem: p for p in sorted(SCENARIO_DIR.glob("*.toml"))}


def simple_scenario(
    *,
    devices: int,
    metrics: tuple[str, ...],
    interval_s: float = 1.0,
    site: str = "sim",
    seed: int = 0,
    device_name: str = "sim-{n:05d}",
    sensor: str = "sim",
    anomalies: tuple[ScheduledAnomaly, ...] = (),
    random_anomalies: tuple[RandomAnomalies, ...] = (),
    duration_s: float | None = None,
    speed: str = "realtime",
    start: datetime | None = None,
) -> Scenario:
    """Build a one-site, one-type scenario (what ``sensorgate simulate`` does without a file)."""
    doc = {
        "name": "cli",
        "seed": seed,
        "interval_s": interval_s,
        "duration_s": duration_s,
        "speed": speed,
        "start": start,
        "device_types": {"sim": {"sensor": sensor, "metrics": {m: {} for m in metrics}}},
        "sites": [
            {"id": site, "devices": [{"type": "sim", "count": devices, "name": device_name}]}
        ],
        "anomalies": [a.model_dump() for a in anomalies],
        "random_anomalies": [a.model_dump() for a in random_anomalies],
    }
    return validate_scenario(doc, source="options")


def build_devices(
    scenario: Scenario,
    topics: TopicScheme,
    *,
    sequence_start: int | None = None,
) -> list[SimDevice]:
    """Build the scenario's devices, in site and group order.

    ``sequence_start`` (default: the wall clock in microseconds) numbers each device's
    first event, so that a restarted simulator keeps sequences increasing, as an edge
    agent does, unless a device sent more than a million messages per second.
    """
    if sequence_start is None:
        sequence_start = time.time_ns() // 1000
    names = [
        (site.id, group, name)
        for site in scenario.sites
        for group in site.devices
        for name in group.names()
    ]
    total = len(names)
    devices = []
    for index, (site, group, name) in enumerate(names):
        dtype = scenario.device_types[group.type]
        phase = scenario.interval_s * index / total if scenario.stagger else 0.0
        devices.append(
            SimDevice(
                index=index,
                site=site,
                device=name,
                sensor=dtype.sensor,
                metrics=[MetricSpec(m, p) for m, p in dtype.metrics.items()],
                seed=scenario.seed,
                interval_s=scenario.interval_s,
                phase_s=phase,
                scheduled=scenario.anomalies,
                random_anomalies=scenario.random_anomalies,
                sequence_start=sequence_start,
                topic=topics.telemetry(site, name),
            )
        )
    return devices
