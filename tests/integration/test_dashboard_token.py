"""The dashboard's token comes from the environment or a file, never from argv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.localstack.services import ServiceEndpoints

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SECRET = "Sup3r-s3cret-t0ken-value"


def _env(services: ServiceEndpoints, unique: str, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("SENSORGATE_")},
        "PYTHONPATH": str(ROOT),
        "SENSORGATE_INFLUX__URL": services.influx_url,
        "SENSORGATE_INFLUX__DATABASE": f"k_{unique}",
        "SENSORGATE_MQTT__HOST": services.mqtt_host,
        "SENSORGATE_MQTT__PORT": str(services.mqtt_port),
        "SENSORGATE_TOPIC_PREFIX": f"sgtest/{unique}",
        **extra,
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["dashboard", "--token", SECRET],
        ["dashboard", f"--token={SECRET}"],
        ["dashboard", "--port", "0", "--token"],
        ["gateway", "run", "--dashboard-port", "0", "--dashboard-token", SECRET],
        ["gateway", "run", f"--dashboard-token={SECRET}"],
    ],
)
def test_a_token_in_argv_is_refused_without_repeating_it(
    services: ServiceEndpoints, unique: str, argv: list[str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv],
        env=_env(services, unique),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "SENSORGATE_DASHBOARD__TOKEN" in done.stderr
    assert "--token-file" in done.stderr
    assert SECRET not in done.stderr + done.stdout


def _serve(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "--log-level", "DEBUG", "dashboard", "--port", "0",
         "--duration", "60", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("SensorGate dashboard: http://127.0.0.1:"), first
    return proc, first.split(": ", 1)[1].strip()


def _end(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    assert proc.wait(30) == 0
    assert proc.stderr is not None
    logs = proc.stderr.read()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return logs


def test_token_from_the_environment_or_a_file(
    services: ServiceEndpoints, unique: str, tmp_path: Path
) -> None:
    token_file = tmp_path / "dashboard.token"
    token_file.write_text(SECRET + "\n")
    for env_extra, args in (
        ({"SENSORGATE_DASHBOARD__TOKEN": SECRET}, ()),
        ({}, ("--token-file", str(token_file))),
        ({"SENSORGATE_DASHBOARD__TOKEN_FILE": str(token_file)}, ()),
    ):
        proc, url = _serve(_env(services, unique, **env_extra), *args)
        try:
            assert "token" not in url  # given by the user: not shown again
            assert httpx.get(url + "api/config").status_code == 401
            auth = {"Authorization": f"Bearer {SECRET}"}
            assert httpx.get(url + "api/config", headers=auth).status_code == 200
            # The page URL with the token in it reaches the server: not its log.
            assert httpx.get(url + f"?token={SECRET}").status_code == 200
        finally:
            logs = _end(proc)
        assert "GET /?" not in logs
        assert SECRET not in logs


def test_a_generated_token_is_shown_once_in_the_url(
    services: ServiceEndpoints, unique: str
) -> None:
    proc, url = _serve(_env(services, unique))
    try:
        base, token = url.split("?token=")
        assert len(token) >= 24
        assert httpx.get(base + "api/alarms").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(base + "api/alarms", headers=auth).status_code == 200
    finally:
        _end(proc)


def test_an_unreadable_token_file_is_refused_by_name(
    services: ServiceEndpoints, unique: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "dashboard", "--port", "0",
         "--token-file", str(tmp_path / "missing")],
        env=_env(services, unique), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "token_file" in done.stderr
    assert "missing" in done.stderr
