"""``forget-sessions`` errors: a broker that cannot be reached is a BrokerError (exit 3)."""

from __future__ import annotations

import pytest

from contract.errors import BrokerError, ExitCode, exit_code_for
from edge.childproc import free_port
from edge.mqtt import MqttSettings
from gateway.ops.sessions import forget_session


def test_an_unreachable_broker_is_a_broker_error_naming_the_session() -> None:
    settings = MqttSettings(port=free_port(), client_id="sg-gw-p5")  # nothing listens
    with pytest.raises(BrokerError, match=r"cannot forget the session 'sg-gw-p5'") as caught:
        forget_session(settings, ["sg/v1/+/+/telemetry"], timeout_s=10)
    assert "cannot connect to mqtt://127.0.0.1:" in str(caught.value)
    assert exit_code_for(caught.value) == ExitCode.UNREACHABLE
