"""What the bench measures with: its broker, a status subscriber and a process meter."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: an edge-only install has no psutil
    import psutil
    from paho.mqtt.client import MQTTMessage

    from edge.childproc import ManagedProcess

__all__ = ["Broker", "ProcessMeter", "StatusWatch"]


class ProcessMeter:
    """RSS and CPU time of one process: psutil when installed, else ``/proc``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            import psutil
        except ImportError:
            self._ps: psutil.Process | None = None
            self.source = "/proc"
        else:
            self._ps = psutil.Process(pid)
            self.source = "psutil"
        self._tick = os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int:
        """Resident set size now."""
        if self._ps is not None:
            return int(self._ps.memory_info().rss)
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    def cpu_seconds(self) -> float:
        """User + system CPU time so far."""
        if self._ps is not None:
            t = self._ps.cpu_times()
            return float(t.user + t.system)
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._tick  # utime, stime


class Broker:
    """The broker of the bench: our own mosquitto (restartable) or a given one.

    Ours is :func:`edge.localbroker.start_mosquitto`, the local stack's broker.
    """

    def __init__(self, host: str, port: int | None, workdir: Path) -> None:
        from edge.childproc import free_port

        self.host = host
        self.workdir = workdir
        self.own = port is None
        self.proc: ManagedProcess | None = None
        self.port: int = free_port(host) if port is None else port
        self.start()

    def stop(self) -> None:
        """Stop our mosquitto (nothing for a given broker)."""
        if self.own and self.proc is not None:
            self.proc.stop()
            self.proc = None

    def start(self) -> None:
        """(Re)start our mosquitto on the same port."""
        from edge.localbroker import start_mosquitto

        if self.own and self.proc is None:
            self.proc, _port = start_mosquitto(self.workdir, host=self.host, port=self.port)


class StatusWatch:
    """Subscribe to one device's status topic; keep the latest ``details``."""

    def __init__(
        self, host: str, port: int, topic: str, *, count_only: bool = False, client_id: str = ""
    ) -> None:
        from edge.mqtt import MqttLink, MqttSettings

        self.count_only = count_only
        self.latest: dict[str, Any] | None = None
        self.count = 0
        self._lock = threading.Lock()
        self._topic = topic
        self.subscribed = threading.Event()
        # Reconnects fast: the bench restarts the broker under it.
        settings = MqttSettings(
            host=host,
            port=port,
            client_id=client_id,
            clean_session=not client_id,
            reconnect_min_s=0.05,
            reconnect_max_s=0.5,
        )
        self.link = MqttLink(
            settings,
            on_connect=lambda link: link.subscribe(topic, qos=1),
            on_subscribed=lambda _filters: self.subscribed.set(),
            on_message=self._on_message,
        )
        self.link.start(wait_s=None)  # in the background: the broker may come up later

    def _on_message(self, msg: MQTTMessage) -> None:
        if self.count_only:
            with self._lock:
                self.count += 1
            return
        try:
            doc = json.loads(msg.payload)
            details = doc["data"]["details"]
        except (ValueError, KeyError, TypeError):
            return
        if not details:
            return
        with self._lock:
            self.latest = details
            self.count += 1

    def snapshot(self) -> tuple[int, dict[str, Any] | None]:
        """How many status messages arrived, and the latest details."""
        with self._lock:
            return self.count, self.latest

    def close(self) -> None:
        """Disconnect."""
        self.link.stop()
