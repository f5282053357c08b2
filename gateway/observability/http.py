"""The gateway's ``/metrics`` + ``/healthz`` HTTP endpoint.

:func:`serve` starts a small HTTP server in a thread: ``/metrics`` in Prometheus text
format, ``/healthz`` a JSON readiness document that answers 503 while the broker or
InfluxDB is unreachable.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.observability.health import Health
from gateway.observability.metrics import GatewayMetrics

__all__ = ["serve"]

log = logging.getLogger(__name__)


def serve(
    metrics: GatewayMetrics, health: Health | None, host: str, port: int
) -> ThreadingHTTPServer:
    """Serve ``/metrics`` and ``/healthz`` from a daemon thread; return the server."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif self.path.startswith("/healthz"):
                status = health.status() if health else {"ready": True}
                body = json.dumps({**status, "time": time.time()}).encode()
                self._send(200 if status["ready"] else 503, body, "application/json")
            else:
                self._send(404, b"not found: try /metrics or /healthz\n", "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes every few seconds would flood the log

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    log.info("metrics on http://%s:%d/metrics, health on /healthz", host, server.server_port)
    return server
