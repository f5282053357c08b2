"""``run_command`` reports every command's errors with the one exit-code table."""

from __future__ import annotations

import argparse

import pytest

from contract.errors import BrokerError, ConfigError, SensorGateError, StorageError
from gateway.cli import run_command
from gateway.views import ViewInputError


def _args(exc: BaseException) -> argparse.Namespace:
    def func(_args: argparse.Namespace) -> int:
        raise exc

    return argparse.Namespace(func=func, command="test")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("influx.url", "not a URL"), 2),
        (ViewInputError("--since: expected a duration"), 2),
        (StorageError("InfluxDB at http://127.0.0.1:1 is unreachable"), 3),
        (BrokerError("Not authorized"), 3),
        (SensorGateError("failed"), 1),
        (KeyboardInterrupt(), 130),
    ],
)
def test_errors_become_their_exit_codes(
    error: BaseException, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_command(_args(error)) == code
    if not isinstance(error, KeyboardInterrupt):
        assert capsys.readouterr().err == f"sensorgate: {error}\n"


def test_a_command_result_passes_through() -> None:
    assert run_command(argparse.Namespace(func=lambda _a: None, command="x")) == 0
    assert run_command(argparse.Namespace(func=lambda _a: 1, command="x")) == 1
