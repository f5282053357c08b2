"""System metrics: load, memory, disk and network counters from /proc and statvfs.

``proc_root`` and ``disk_paths`` are options so that tests read fixture trees and a
container can point at the host's /proc bind mount.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge.drivers.base import DriverFault, DriverOptions, Measurement, parse_options

__all__ = ["SystemDriver", "SystemOptions", "create"]

_MEMINFO_KEYS = {"MemTotal": "mem_total", "MemAvailable": "mem_available"}


class SystemOptions(DriverOptions):
    """Options of the ``system`` driver."""

    proc_root: Path = Path("/proc")
    disk_paths: tuple[Path, ...] = (Path("/"),)
    interfaces: tuple[str, ...] = ()
    """Network interfaces to report; every one but ``lo`` when empty."""
    load: bool = True
    memory: bool = True
    disk: bool = True
    network: bool = True


class SystemDriver:
    """Reads the host's vital signs; each group fails on its own."""

    kind = "system"

    def __init__(self, options: SystemOptions) -> None:
        self.options = options

    def read(self) -> list[Measurement]:
        """Read every enabled group; a failing group becomes fault measurements."""
        out: list[Measurement] = []
        groups = [
            (self.options.load, "load1", self._load),
            (self.options.memory, "mem_used_percent", self._memory),
            (self.options.disk, "disk_used_percent", self._disk),
            (self.options.network, "net_rx_bytes", self._network),
        ]
        for enabled, fault_metric, reader in groups:
            if not enabled:
                continue
            try:
                out.extend(reader())
            except (OSError, ValueError, IndexError, KeyError, ZeroDivisionError) as exc:
                out.append(Measurement(fault_metric, None, "", f"{type(exc).__name__}: {exc}"))
        if not out:
            raise DriverFault("every metric group is disabled")
        return out

    def _load(self) -> list[Measurement]:
        fields = (self.options.proc_root / "loadavg").read_text().split()
        return [
            Measurement("load1", float(fields[0])),
            Measurement("load5", float(fields[1])),
            Measurement("load15", float(fields[2])),
        ]

    def _memory(self) -> list[Measurement]:
        values: dict[str, int] = {}
        for line in (self.options.proc_root / "meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in _MEMINFO_KEYS:
                values[_MEMINFO_KEYS[key]] = int(rest.split()[0]) * 1024  # kB in meminfo
        total, available = values["mem_total"], values["mem_available"]
        return [
            Measurement("mem_total", float(total), "B"),
            Measurement("mem_available", float(available), "B"),
            Measurement("mem_used_percent", round(100.0 * (total - available) / total, 3), "%"),
        ]

    def _disk(self) -> list[Measurement]:
        out = []
        for path in self.options.disk_paths:
            st = os.statvfs(path)
            total = st.f_blocks * st.f_frsize
            free = st.f_bavail * st.f_frsize  # what an unprivileged writer (us) can still use
            used_pct = 100.0 * (total - st.f_bfree * st.f_frsize) / total if total else 0.0
            channel = None if len(self.options.disk_paths) == 1 else _path_channel(path)
            out.append(Measurement("disk_free", float(free), "B", channel=channel))
            out.append(Measurement("disk_used_percent", round(used_pct, 3), "%", channel=channel))
        return out

    def _network(self) -> list[Measurement]:
        lines = (self.options.proc_root / "net" / "dev").read_text().splitlines()[2:]
        wanted = set(self.options.interfaces)
        out = []
        for line in lines:
            name, _, rest = line.partition(":")
            name = name.strip()
            if (wanted and name not in wanted) or (not wanted and name == "lo"):
                continue
            cols = rest.split()
            out.append(Measurement("net_rx_bytes", float(cols[0]), "B", channel=name))
            out.append(Measurement("net_tx_bytes", float(cols[8]), "B", channel=name))
        missing = wanted - {m.channel for m in out}
        if missing:
            raise KeyError(f"no such interface(s): {', '.join(sorted(missing))}")
        return out

    def close(self) -> None:
        """Nothing to release."""


def _path_channel(path: Path) -> str:
    text = str(path).strip("/").replace("/", "_")
    return text or "root"


def create(options: Mapping[str, Any]) -> SystemDriver:
    """Build a system metrics driver from its options."""
    return SystemDriver(parse_options(SystemOptions, options))
