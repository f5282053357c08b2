"""The :class:`Adapter` protocol and what every family shares (:class:`BaseAdapter`).

An adapter is pure logic: no broker, no Bytewax, no gateway import. The gateway asks it
three things: which topic filters it needs (:meth:`Adapter.filters`), a stable per-device
routing key from a topic alone (:meth:`Adapter.route_key`, so the shard router keeps a
device's messages on one shard without decoding), and what a message means
(:meth:`Adapter.adapt`, which never raises: anything unmappable is an
:class:`~dataflows.adapters.result.AdapterError`). Stateful families (Home Assistant's
learned entities, Sparkplug's aliases and ``seq``) keep their state in plain data,
saved by :meth:`Adapter.snapshot` and put back by :meth:`Adapter.restore`.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from dataflows.adapters.config import BaseAdapterConfig
from dataflows.adapters.identity import (
    arrival_low_bits,
    event_id,
    hashed_low_bits,
    sequence_of,
)
from dataflows.adapters.ids import IdPolicy, IdRefused
from dataflows.adapters.naming import (
    FAHRENHEIT,
    MetricNamer,
    fahrenheit_to_celsius,
    is_temperature,
)
from dataflows.adapters.result import AdapterError, AdapterResult, StatusChange, Telemetry
from dataflows.adapters.topicfilter import TopicFilter
from dataflows.adapters.values import PLAUSIBLE_US, Coercer, NotJson

__all__ = ["Adapter", "AdapterFailure", "BaseAdapter", "ValueTopic"]

_MAX_FUTURE_US = 10 * 365 * 86_400 * 1_000_000


@dataclass(frozen=True, slots=True)
class ValueTopic:
    """What every plain number on one topic becomes (a Shelly Gen1 value topic).

    The decode stage reads such messages in a batch (:mod:`dataflows.decode_foreign`):
    ``value`` (a finite float) becomes ``fahrenheit_to_celsius(value)`` if
    ``fahrenheit``, then ``value * factor``, timed by arrival, exactly as
    :meth:`Adapter.adapt` would map it.
    """

    site: str
    device: str
    sensor: str
    metric: str
    factor: float = 1.0
    fahrenheit: bool = False


@runtime_checkable
class Adapter(Protocol):
    """What the gateway needs from one configured adapter."""

    name: str
    kind: str

    def filters(self) -> tuple[TopicFilter, ...]:
        """Return the subscriptions this adapter needs."""

    def route_key(self, topic: str) -> str | None:
        """Return a stable routing key for ``topic``'s device (None: not this adapter's)."""

    def adapt(self, topic: str, payload: bytes, received_us: int) -> AdapterResult:
        """Map one message; never raises."""

    def value_topic(self, topic: str) -> ValueTopic | None:
        """Return what every plain number on ``topic`` becomes, if that is all it carries."""

    def snapshot(self) -> dict[str, Any]:
        """Return the adapter's state as plain data (JSON-ready)."""

    def restore(self, state: dict[str, Any]) -> None:
        """Put back what :meth:`snapshot` returned."""


class AdapterFailure(Exception):
    """Raised inside an adapter when a message cannot be mapped; becomes an AdapterError."""


class BaseAdapter:
    """Device mapping, ids, numbers, units, time and sequences for every family."""

    kind = "base"

    def __init__(self, config: BaseAdapterConfig) -> None:
        self.config = config
        self.name = config.name
        self.ids = IdPolicy(config.ids)
        self.coerce = Coercer(
            booleans=config.booleans,
            enums=config.enums,
            numeric_strings=config.numeric_strings,
            decimal_comma=config.decimal_comma,
        )
        self.metric_name = MetricNamer(config.metrics)
        self.exclude = frozenset(config.exclude)
        self.zone = zoneinfo.ZoneInfo(config.timezone)
        self._devices: dict[str, tuple[str, str]] = {}
        for foreign, target in config.devices.items():
            site, _, device = target.rpartition("/")
            self._devices[foreign] = (site or config.site, device)
        self._device_cache: dict[tuple[str, str], tuple[str, str]] = {}

    # -- the protocol ---------------------------------------------------------------

    def filters(self) -> tuple[TopicFilter, ...]:
        """Return the subscriptions this adapter needs."""
        raise NotImplementedError

    def route_key(self, topic: str) -> str | None:
        """Return a stable routing key for ``topic``'s device (None: not this adapter's)."""
        raise NotImplementedError

    def adapt(self, topic: str, payload: bytes, received_us: int) -> AdapterResult:
        """Map one message; anything unmappable becomes an error, never an exception."""
        out = AdapterResult()
        try:
            self._adapt(topic, payload, received_us, out)
        except (AdapterFailure, IdRefused, NotJson) as exc:
            out.errors.append(self.error(str(exc)))
        except RecursionError:
            out.errors.append(self.error("payload is nested too deeply"))
        except Exception as exc:  # a bug must not stop the flow; the dead letter keeps the bytes
            out.errors.append(self.error(f"internal error {type(exc).__name__}: {exc}"))
        return out

    def _adapt(self, topic: str, payload: bytes, received_us: int, out: AdapterResult) -> None:
        raise NotImplementedError

    def value_topic(self, topic: str) -> ValueTopic | None:
        """No value topics by default: every message goes through :meth:`adapt`."""
        return None

    def snapshot(self) -> dict[str, Any]:
        """Stateless by default."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Stateless by default."""

    # -- helpers for the families ---------------------------------------------------

    def error(self, message: str) -> AdapterError:
        """Return an error of this adapter."""
        return AdapterError(self.name, self.kind, message)

    def device_of(self, foreign: str, site: str | None = None) -> tuple[str, str]:
        """Map a foreign device id (and optional foreign site) to (site, device)."""
        key = (foreign, site or "")
        hit = self._device_cache.get(key)
        if hit is not None:
            return hit
        mapped = self._devices.get(foreign)
        if mapped is None:
            mapped = (
                self.ids("site", site) if site else self.config.site,
                self.ids("device", foreign),
            )
        if len(self._device_cache) >= 100_000:
            self._device_cache.clear()
        self._device_cache[key] = mapped
        return mapped

    def telemetry(
        self,
        site: str,
        device: str,
        topic: str,
        payload: bytes,
        time_us: int,
        low: int | None = None,
        *,
        arrival: bool = False,
    ) -> Telemetry:
        """Start the telemetry of one device: sequence and event id from the message.

        ``arrival``: ``time_us`` is the gateway's arrival stamp, not a time of the
        payload's own (see :func:`~dataflows.adapters.identity.arrival_low_bits`).
        """
        if low is None:
            if arrival:
                low = arrival_low_bits(time_us, topic, payload, device)
            else:
                low = hashed_low_bits(topic, payload, device)
        sequence = sequence_of(time_us, low)
        return Telemetry(
            site, device, sequence, event_id(self.name, topic, device, sequence, payload)
        )

    def message_time(self, payload_us: int | None, received_us: int) -> int:
        """Return the message's time: its own when present and plausible, else arrival."""
        return self.timed(payload_us, received_us)[0]

    def timed(self, payload_us: int | None, received_us: int) -> tuple[int, bool]:
        """Return the message's time and whether it is the arrival (no plausible own time)."""
        if (
            payload_us is None
            or not self.config.payload_time
            or payload_us < PLAUSIBLE_US
            or payload_us > received_us + _MAX_FUTURE_US
        ):
            return received_us, True
        return payload_us, False

    def add(
        self,
        tel: Telemetry,
        out: AdapterResult,
        sensor: str,
        field: str,
        raw: Any,
        unit: str,
        t_us: int,
        *,
        metric: str | None = None,
        factor: float = 1.0,
    ) -> bool:
        """Add one reading from a foreign field; False (and counted) if it is not one."""
        if field in self.exclude:
            out.skipped += 1
            return False
        value = self.coerce(raw, field)
        if value is None:
            out.skipped += 1
            return False
        name = metric or self.metric_name(field)
        unit = self.config.units.get(name, unit)
        if unit in FAHRENHEIT and is_temperature(name):
            value, unit = fahrenheit_to_celsius(value), "°C"
        if factor != 1.0:
            value *= factor
        tel.add(self.ids("sensor", sensor), self.ids("metric", name), value, unit[:32], t_us)
        return True

    def status(
        self,
        out: AdapterResult,
        site: str,
        device: str,
        online: bool,
        received_us: int,
        reason: str,
        **details: Any,
    ) -> None:
        """Record a device coming online or going offline."""
        out.status.append(StatusChange(site, device, online, received_us, reason, details))
