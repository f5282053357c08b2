"""The one error root of SensorGate and its subclasses, one per boundary.

Hierarchy::

    SensorGateError
    ├── ContractError            the wire contract was not honoured
    │   ├── TopicError           a topic or an id in it is not acceptable
    │   └── DecodeError          bytes that are not a valid event (carries a reason)
    ├── ConfigError              configuration refused (carries the field and the reason)
    ├── TimeFormatError          a duration or a time not written in an accepted form
    ├── BrokerError              the MQTT broker could not be reached or refused us
    ├── StorageError             InfluxDB (or a local buffer) could not be written or read
    └── ServiceError             a local service (mosquitto, influxd) could not be started

Vendor exceptions (paho, httpx, influxdb-client) are translated into these inside the
adapter that calls the vendor, never further in.
"""

from __future__ import annotations

from contract.reasons import DeadLetterReason

__all__ = [
    "BrokerError",
    "ConfigError",
    "ContractError",
    "DecodeError",
    "SensorGateError",
    "ServiceError",
    "StorageError",
    "TimeFormatError",
    "TopicError",
]


class SensorGateError(Exception):
    """Root of every error SensorGate raises on purpose."""


class ContractError(SensorGateError):
    """The wire contract was not honoured."""


class TopicError(ContractError):
    """A topic, or an id meant for a topic, is not acceptable."""


class DecodeError(ContractError):
    """Bytes that could not be decoded into a valid event.

    ``reason`` is one of the fixed dead-letter reasons, so the gateway can file the
    message without parsing the human text in ``detail``.
    """

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class ConfigError(SensorGateError):
    """Configuration was refused: ``field`` names the setting, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid configuration for {field!r}: {reason}")
        self.field = field
        self.reason = reason


class TimeFormatError(SensorGateError, ValueError):
    """A duration or a time is not written in an accepted form (the message says which are).

    Also a ``ValueError``, so a pydantic validator that parses a duration reports it as
    a validation error of its field. See :mod:`contract.durations`.
    """


class BrokerError(SensorGateError):
    """The MQTT broker could not be reached, or it refused the client."""


class StorageError(SensorGateError):
    """InfluxDB, or a local buffer, could not be written or read.

    ``retry_after`` is set (seconds) when the server asked us to wait.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceError(SensorGateError):
    """A local service (mosquitto, influxd) could not be started or stopped."""
