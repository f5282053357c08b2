"""The one error root of SensorGate and its subclasses, one per boundary.

Hierarchy::

    SensorGateError
    ├── ContractError            the wire contract was not honoured
    │   ├── TopicError           a topic or an id in it is not acceptable
    │   └── DecodeError          bytes that are not a valid event (carries a reason)
    ├── ConfigError              configuration refused (carries the field and the reason)
    ├── InputError               a command's input refused (an option, a filter, a time)
    │   └── TimeFormatError      a duration or a time not written in an accepted form
    ├── BrokerError              the MQTT broker could not be reached or refused us
    ├── StorageError             InfluxDB (or a local buffer) could not be written or read
    └── ServiceError             a local service (mosquitto, influxd) could not be started

Vendor exceptions (paho, httpx, influxdb-client) are translated into these inside the
adapter that calls the vendor, never further in.

Every command line maps an error to its exit code through :data:`EXIT_CODES` and
:func:`exit_code_for`, the one table of exit codes (:class:`ExitCode`): 0 done, 1
failed, 2 refused input or configuration, 3 the broker or InfluxDB could not be reached
or refused the client, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType
from typing import Final

from contract.reasons import DeadLetterReason

__all__ = [
    "EXIT_CODES",
    "BrokerError",
    "ConfigError",
    "ContractError",
    "DecodeError",
    "ExitCode",
    "InputError",
    "SensorGateError",
    "ServiceError",
    "StorageError",
    "TimeFormatError",
    "TopicError",
    "exit_code_for",
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


class InputError(SensorGateError):
    """Input given to a command (an option, a filter, a time) was refused; says which and why."""


class TimeFormatError(InputError, ValueError):
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


class ExitCode(IntEnum):
    """The exit codes of every SensorGate command, for scripts."""

    OK = 0
    """Done (and, where a command checks something, nothing was found wrong)."""
    FAILED = 1
    """Ran but failed, or found what it checks for (a failed probe, an active alarm)."""
    REFUSED = 2
    """Input or configuration refused; the message names the field and the reason."""
    UNREACHABLE = 3
    """The MQTT broker or InfluxDB could not be reached, or refused the client."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C (SIGINT) before it was done."""


EXIT_CODES: Final[Mapping[type[BaseException], ExitCode]] = MappingProxyType(
    {
        SensorGateError: ExitCode.FAILED,
        ServiceError: ExitCode.FAILED,
        ContractError: ExitCode.REFUSED,
        ConfigError: ExitCode.REFUSED,
        InputError: ExitCode.REFUSED,
        BrokerError: ExitCode.UNREACHABLE,
        StorageError: ExitCode.UNREACHABLE,
        KeyboardInterrupt: ExitCode.INTERRUPTED,
    }
)
"""Error class -> exit code; a subclass takes the code of its nearest listed ancestor."""


def exit_code_for(exc: BaseException) -> ExitCode:
    """Return the exit code of ``exc`` (:data:`EXIT_CODES`; anything else: ``FAILED``)."""
    for cls in type(exc).__mro__:
        code = EXIT_CODES.get(cls)
        if code is not None:
            return code
    return ExitCode.FAILED
