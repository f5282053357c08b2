"""The agent under test as a separate process, and its configuration."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["agent_config", "agent_process", "config_toml", "status_topic", "wait_for"]

_T = TypeVar("_T")
_REPO = Path(__file__).resolve().parents[2]


def config_toml(doc: dict[str, Any]) -> str:
    """Write an agent config as TOML (simple tables and arrays of tables are all it needs)."""

    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    lines = [f"{k} = {value(v)}" for k, v in doc.items() if not isinstance(v, dict | list)]
    for key, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{key}]")
            lines.extend(f"{k} = {value(v)}" for k, v in table.items())
    for sensor in doc["sensors"]:
        lines.append("[[sensors]]")
        lines.extend(f"{k} = {value(v)}" for k, v in sensor.items())
    return "\n".join(lines) + "\n"


def agent_config(
    device: str,
    port: int,
    outbox: Path,
    *,
    host: str = "127.0.0.1",
    sensors: int = 10,
    interval_s: float = 1.0,
    batch: dict[str, Any] | None = None,
    outbox_extra: dict[str, Any] | None = None,
    heartbeat_s: float = 60.0,
) -> dict[str, Any]:
    """Return an agent config with ``sensors`` simulated sensors (the defaults elsewhere)."""
    doc: dict[str, Any] = {
        "site": "bench",
        "device": device,
        "log_level": "WARNING",
        "mqtt": {
            "host": host,
            "port": port,
            "topic_prefix": "sgbench/v1",
            "reconnect_min_s": 0.25,
            "reconnect_max_s": 1.0,
        },
        "outbox": {"path": str(outbox), **(outbox_extra or {})},
        "status": {"heartbeat_s": heartbeat_s},
        "sensors": [
            {
                "id": f"s{i:02d}",
                "driver": "simulated",
                "interval_s": interval_s,
                "options": {"seed": i},
            }
            for i in range(sensors)
        ],
    }
    if batch:
        doc["batch"] = batch
    return doc


@contextlib.contextmanager
def agent_process(config: dict[str, Any], workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m edge.cli run`` on ``config``; SIGTERM it at the end."""
    path = workdir / f"{config['device']}.toml"
    path.write_text(config_toml(config))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
    log = (workdir / f"{config['device']}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(path)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def wait_for(
    cond: Callable[[], _T | None],
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
) -> _T:
    """Poll ``cond`` until it returns a true value; raise if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the agent exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def status_topic(device: str) -> str:
    """Return the status topic of a bench device."""
    return f"sgbench/v1/bench/{device}/status"
