"""Facts about the machine and the software a benchmark ran on, for its report."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from contract.errors import ServiceError
from gateway.localstack.services import find_binary

__all__ = ["machine_facts", "service_versions"]


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_facts() -> dict[str, Any]:
    """Return cores, memory, CPU model, OS, Python and the load average right now."""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }


def _first_line(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0].strip() if text else None


def service_versions() -> dict[str, str]:
    """Return the versions of influxd, mosquitto and the Python packages in play."""
    out: dict[str, str] = {}
    for name, argv in (("influxd", ["version"]), ("mosquitto", ["-h"])):
        try:
            line = _first_line([find_binary(name), *argv])
        except ServiceError:
            line = None
        out[name] = line or "not found"
    for package in ("paho-mqtt", "bytewax", "httpx", "pydantic"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return out
