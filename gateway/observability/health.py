"""Readiness of the gateway: the broker and InfluxDB are both reachable.

:mod:`gateway.observability.http` answers ``/healthz`` from :meth:`Health.status`.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable

import httpx

from gateway.observability.metrics import GatewayMetrics

__all__ = ["Health"]


class Health:
    """Readiness: the broker and InfluxDB are both reachable.

    InfluxDB is pinged by a background thread every ``interval_s`` so that a probe
    never waits on the network.
    """

    def __init__(
        self,
        *,
        broker_ok: Callable[[], bool],
        influx_url: str,
        metrics: GatewayMetrics | None = None,
        interval_s: float = 5.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._broker_ok = broker_ok
        self._verify = verify
        self._ping_url = f"{influx_url.rstrip('/')}/ping"
        self._metrics = metrics
        self._interval = interval_s
        self._influx_ok = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)

    def start(self) -> Health:
        """Start pinging InfluxDB."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop pinging."""
        self._stop.set()

    def _run(self) -> None:
        with httpx.Client(timeout=min(self._interval, 2.0), verify=self._verify) as http:
            while not self._stop.is_set():
                try:
                    self._influx_ok = http.get(self._ping_url).status_code in (200, 204)
                except httpx.HTTPError:
                    self._influx_ok = False
                if self._metrics is not None:
                    self._metrics.ready.set(1 if self.status()["ready"] else 0)
                self._stop.wait(self._interval)

    def status(self) -> dict[str, bool]:
        """Return ``{"ready", "broker", "influxdb"}``."""
        broker = bool(self._broker_ok())
        return {"ready": broker and self._influx_ok, "broker": broker, "influxdb": self._influx_ok}
