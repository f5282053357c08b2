"""The one exit-code table: every error class maps to its documented code."""

from __future__ import annotations

import pytest

from contract.errors import (
    EXIT_CODES,
    BrokerError,
    ConfigError,
    ContractError,
    DecodeError,
    ExitCode,
    InputError,
    SensorGateError,
    ServiceError,
    StorageError,
    TopicError,
    exit_code_for,
)
from contract.reasons import DeadLetterReason


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (SensorGateError("x"), 1),
        (ServiceError("mosquitto did not start"), 1),
        (ConfigError("mqtt.port", "must be at most 65535"), 2),
        (InputError("--since: expected a duration"), 2),
        (ContractError("x"), 2),
        (TopicError("bad id"), 2),
        (DecodeError(DeadLetterReason.NOT_JSON, "x"), 2),
        (BrokerError("Not authorized"), 3),
        (StorageError("connection refused"), 3),
        (KeyboardInterrupt(), 130),
    ],
)
def test_each_error_has_its_documented_code(error: BaseException, code: int) -> None:
    assert exit_code_for(error) == code


def test_a_subclass_takes_the_code_of_its_nearest_listed_ancestor() -> None:
    class WriterClosed(StorageError):
        pass

    class Probe(SensorGateError):
        pass

    assert exit_code_for(WriterClosed("closed")) is ExitCode.UNREACHABLE
    assert exit_code_for(Probe("x")) is ExitCode.FAILED


def test_an_unexpected_exception_is_a_failure() -> None:
    assert exit_code_for(RuntimeError("bug")) is ExitCode.FAILED


def test_the_codes_are_the_ones_readme_documents() -> None:
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0,
        "FAILED": 1,
        "REFUSED": 2,
        "UNREACHABLE": 3,
        "INTERRUPTED": 130,
    }
    assert set(EXIT_CODES.values()) == set(ExitCode) - {ExitCode.OK}


def test_the_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        EXIT_CODES[ValueError] = ExitCode.REFUSED  # type: ignore[index]
