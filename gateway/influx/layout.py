"""Where each measurement is stored: its retention policy, and the name InfluxQL reads it by.

SensorGate's measurements fall in three classes, each kept for its own time
(``influx.retention``, InfluxDB 1.x retention policies)::

    class         measurements                                   default policy, duration
    raw           readings, late_readings                        "raw"          30d (DEFAULT)
    aggregates    aggregates, alarms, replay_aggregates,         "aggregates"   400d
                  replay_alarms
    deadletters   deadletters                                    "deadletters"  14d

:class:`StorageLayout` is the one place that maps a measurement to its policy (for a
writer's ``rp=``) and to its qualified InfluxQL name (``"aggregates"."aggregates"``).
With retention off every measurement lives in the database's default policy and reads
use the bare name, as before retention existed.

>>> from gateway.settings import InfluxSettings
>>> layout = StorageLayout.of(InfluxSettings())
>>> layout.policy("alarms"), layout.aggregates
('aggregates', '"aggregates"."aggregates"')
>>> StorageLayout.single().aggregates
'"aggregates"'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from gateway.influx.query import quote_ident
from gateway.settings import InfluxSettings, retention_hours

__all__ = ["MEASUREMENT_CLASS", "MeasurementClass", "RetentionPolicy", "StorageLayout"]

MeasurementClass = Literal["raw", "aggregates", "deadletters"]

MEASUREMENT_CLASS: dict[str, MeasurementClass] = {
    "readings": "raw",
    "late_readings": "raw",
    "aggregates": "aggregates",
    "alarms": "aggregates",
    "replay_aggregates": "aggregates",
    "replay_alarms": "aggregates",
    "deadletters": "deadletters",
}
"""Every measurement the gateway writes, and its class."""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """One retention policy as the gateway wants it on the server."""

    name: str
    duration: str
    """As InfluxQL spells it: ``30d``, ``12h``, ``52w`` or ``INF``."""
    default: bool = False
    """Whether it is the database's DEFAULT policy (the raw one)."""

    @property
    def hours(self) -> int | None:
        """The duration in hours (None: for ever)."""
        return retention_hours(self.duration)

    @property
    def period(self) -> timedelta | None:
        """The duration (None: for ever)."""
        hours = self.hours
        return None if hours is None else timedelta(hours=hours)


@dataclass(frozen=True, slots=True)
class StorageLayout:
    """The retention policy of each measurement class (empty: retention off)."""

    policies: tuple[tuple[MeasurementClass, RetentionPolicy], ...] = ()

    @classmethod
    def of(cls, settings: InfluxSettings) -> StorageLayout:
        """Return the layout the settings ask for (:attr:`~InfluxSettings.retention_active`)."""
        if not settings.retention_active:
            return cls.single()
        r = settings.retention
        return cls(
            (
                ("raw", RetentionPolicy(r.raw_policy, r.raw, default=True)),
                ("aggregates", RetentionPolicy(r.aggregates_policy, r.aggregates)),
                ("deadletters", RetentionPolicy(r.deadletters_policy, r.deadletters)),
            )
        )

    @classmethod
    def single(cls) -> StorageLayout:
        """Everything in the database's default policy (retention off)."""
        return cls(())

    @property
    def active(self) -> bool:
        """Whether measurements go to their own retention policies."""
        return bool(self.policies)

    def of_class(self, kind: MeasurementClass) -> RetentionPolicy | None:
        """Return the policy of a class (None: the database's default, retention off)."""
        return next((p for k, p in self.policies if k == kind), None)

    def distinct(self) -> tuple[RetentionPolicy, ...]:
        """Return the policies to create, each once (classes may share one), raw first."""
        out: dict[str, RetentionPolicy] = {}
        for _, policy in self.policies:
            out.setdefault(policy.name, policy)
        return tuple(out.values())

    def policy(self, measurement: str) -> str | None:
        """Return the retention policy ``measurement`` is written to (None: the default)."""
        found = self.of_class(_class_of(measurement))
        return None if found is None else found.name

    def source(self, measurement: str) -> str:
        """``measurement`` as an InfluxQL FROM clause names it: ``"policy"."name"``."""
        policy = self.policy(measurement)
        name = quote_ident(measurement)
        return name if policy is None else f"{quote_ident(policy)}.{name}"

    @property
    def raw_period(self) -> timedelta | None:
        """How long raw readings are kept (None: for ever, or unknown with retention off)."""
        found = self.of_class("raw")
        return None if found is None else found.period

    # The measurements as InfluxQL names them, for f-strings.
    @property
    def readings(self) -> str:
        """``readings`` as a FROM clause."""
        return self.source("readings")

    @property
    def late_readings(self) -> str:
        """``late_readings`` as a FROM clause."""
        return self.source("late_readings")

    @property
    def aggregates(self) -> str:
        """``aggregates`` as a FROM clause."""
        return self.source("aggregates")

    @property
    def alarms(self) -> str:
        """``alarms`` as a FROM clause."""
        return self.source("alarms")

    @property
    def deadletters(self) -> str:
        """``deadletters`` as a FROM clause."""
        return self.source("deadletters")

    @property
    def replay_aggregates(self) -> str:
        """``replay_aggregates`` (``sensorgate replay``) as a FROM clause."""
        return self.source("replay_aggregates")

    @property
    def replay_alarms(self) -> str:
        """``replay_alarms`` (``sensorgate replay``) as a FROM clause."""
        return self.source("replay_alarms")


def _class_of(measurement: str) -> MeasurementClass:
    try:
        return MEASUREMENT_CLASS[measurement]
    except KeyError:
        raise ValueError(
            f"no measurement {measurement!r} in the gateway's schema;"
            f" expected one of {', '.join(MEASUREMENT_CLASS)}"
        ) from None
