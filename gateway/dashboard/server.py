"""The dashboard's HTTP server: the page, a JSON API and server-sent events.

Routes (all GET unless said):

- ``/`` the page; ``/static/*`` its assets (shipped in the package)
- ``/api/config`` read-only flag and topic prefix
- ``/api/fleet`` devices with online/offline, last seen, latest values
- ``/api/alarms`` active alarms (InfluxDB, kept fresh by MQTT alarm events)
- ``/api/device?site=&device=&range=1h`` status, readings, aggregates, alarm events
- ``/api/events`` server-sent events: ``alarms`` and ``fleet`` snapshots when they change
- ``POST /api/ack`` ``{"site","device","alarm_id","by"}`` with ``Authorization: Bearer
  TOKEN``: publishes the acknowledge command over MQTT (403 when read-only)
- ``/healthz``

It runs on its own port, apart from the gateway's ``/metrics``: the page may be exposed
to operators while metrics stay internal, and it can run without a gateway
(``sensorgate dashboard``).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import mimetypes
import queue
import secrets
import signal
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from contract.alarms import decode_alarm
from contract.durations import parse_duration
from contract.errors import BrokerError, SensorGateError, StorageError
from contract.topics import TopicKind
from gateway.dashboard.board import AlarmBoard
from gateway.dashboard.commands import publish_ack
from gateway.influx.query import InfluxQL
from gateway.settings import GatewaySettings
from gateway.views.queries import ViewInputError, Views

__all__ = ["Dashboard", "run_dashboard"]

log = logging.getLogger(__name__)

_STATIC = resources.files("gateway.dashboard") / "static"
_RANGES = ("15m", "1h", "6h", "24h", "7d")


class _Hub:
    """Fan-out of server-sent events to connected browsers (bounded queue each)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: set[queue.Queue[bytes | None]] = set()
        self.last: dict[str, bytes] = {}

    def subscribe(self) -> queue.Queue[bytes | None]:
        q: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
        with self._lock:
            self._clients.add(q)
            for frame in self.last.values():
                q.put_nowait(frame)
        return q

    def unsubscribe(self, q: queue.Queue[bytes | None]) -> None:
        with self._lock:
            self._clients.discard(q)

    def publish(self, event: str, data: Any) -> None:
        frame = f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
        with self._lock:
            self.last[event] = frame
            for q in list(self._clients):
                try:
                    q.put_nowait(frame)
                except queue.Full:  # a stalled browser: drop it, it reconnects
                    self._clients.discard(q)
                    with contextlib.suppress(queue.Full):
                        q.put_nowait(None)

    def close(self) -> None:
        with self._lock:
            for q in self._clients:
                with contextlib.suppress(queue.Full):
                    q.put_nowait(None)
            self._clients.clear()


class Dashboard:
    """The dashboard: HTTP server, InfluxDB poller and MQTT alarm listener."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        read_only: bool = False,
        token: str | None = None,
        poll_s: float = 2.0,
        offline_after_s: float = 60.0,
        mqtt: bool = True,
    ) -> None:
        self.settings = settings
        self.read_only = read_only
        self.token = None if read_only else (token or secrets.token_urlsafe(16))
        self.poll_s = poll_s
        self.board = AlarmBoard()
        self.hub = _Hub()
        self._client = InfluxQL(settings.influx)
        self._db_lock = threading.Lock()
        self.views = Views(self._client, offline_after=timedelta(seconds=offline_after_s))
        self._stop = threading.Event()
        self._link: Any = None
        self._use_mqtt = mqtt
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True
        self._threads: list[threading.Thread] = []
        self._fleet_json = ""

    @property
    def url(self) -> str:
        """Where the page is."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def url_with_token(self) -> str:
        """The page URL that also hands the browser the acknowledge token."""
        return self.url if self.token is None else f"{self.url}?token={self.token}"

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> Dashboard:
        """Serve in background threads; connect to the broker if configured."""
        if self._use_mqtt:
            self._start_mqtt()
        self.refresh()
        for target, name in (
            (self.httpd.serve_forever, "dashboard-http"),
            (self._poll, "dashboard-poll"),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("dashboard at %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and disconnect."""
        self._stop.set()
        self.hub.close()
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._link is not None:
            self._link.stop()
        for t in self._threads:
            t.join(5)
        self._client.close()

    def __enter__(self) -> Dashboard:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _start_mqtt(self) -> None:
        from edge.mqtt import MqttLink

        topic_filter = self.settings.topics.subscription(TopicKind.ALARMS)

        def on_connect(link: MqttLink) -> None:
            link.subscribe(topic_filter, qos=1)

        # The dashboard's own broker user (mqtt.dashboard) over the gateway side's TLS:
        # it reads alarms; the broker's ACL decides whether it may acknowledge.
        link_settings = self.settings.mqtt.link_settings(
            f"sg-dashboard-{secrets.token_hex(4)}", role="dashboard"
        ).model_copy(update={"clean_session": True})
        self._link = MqttLink(
            link_settings, on_connect=on_connect, on_message=self._on_alarm_message
        )
        self._link.start(wait_s=10)

    def _on_alarm_message(self, msg: Any) -> None:
        # paho's thread: decode, update the board, queue the frame; nothing blocking.
        try:
            event = decode_alarm(msg.payload)
        except SensorGateError as exc:
            log.warning("ignoring a bad alarm event on %s: %s", msg.topic, exc)
            return
        if self.board.apply_event(event):
            self.hub.publish("alarms", self.board.active())

    # -- data -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read fleet and active alarms from InfluxDB and push what changed."""
        try:
            with self._db_lock:
                fleet = [d.as_json() for d in self.views.fleet()]
                alarms = [a.as_json() for a in self.views.active_alarms()]
        except StorageError as exc:
            log.warning("dashboard: %s", exc)
            return
        if self.board.apply_snapshot(alarms) or "alarms" not in self.hub.last:
            self.hub.publish("alarms", self.board.active())
        fleet_json = json.dumps(fleet)
        if fleet_json != self._fleet_json:
            self._fleet_json = fleet_json
            self.hub.publish("fleet", {"at": _now(), "devices": fleet})

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.refresh()

    def device_doc(self, site: str, device: str, span: str) -> dict[str, Any]:
        """Everything the device page shows."""
        if span not in _RANGES:
            raise ViewInputError(f"range must be one of {', '.join(_RANGES)}; got {span!r}")
        end = datetime.now(UTC)
        start = end - parse_duration(span)
        from gateway.views.queries import AlarmFilter

        with self._db_lock:
            status = self.views.device(site, device)
            interval, readings = self.views.readings(site, device, start=start, end=end)
            _, aggs = self.views.aggregates(
                site, device, start=start, end=end, windows=self.settings.stream.windows
            )
            alarms = self.views.alarm_history(
                AlarmFilter(site=site, device=device), start=start, end=end, limit=500
            )
            _, band = self.views.expected_band(
                site, device, start=start, end=end, windows=self.settings.stream.windows
            )
        return {
            "site": site,
            "device": device,
            "range": span,
            "start": start.isoformat().replace("+00:00", "Z"),
            "end": end.isoformat().replace("+00:00", "Z"),
            "interval": interval,
            "status": status.as_json() if status else None,
            "readings": [p.as_json() for p in readings],
            "aggregates": [p.as_json() for p in aggs],
            "band": [p.as_json() for p in band],
            "alarms": [a.as_json() for a in alarms],
        }

    def acknowledge(self, body: dict[str, Any]) -> dict[str, Any]:
        """Publish the acknowledge command for one alarm."""
        if self._link is None:
            raise StorageError("no MQTT connection: cannot send the acknowledge command")
        try:
            site, device, alarm_id = body["site"], body["device"], body["alarm_id"]
        except KeyError as exc:
            raise ViewInputError(f"missing {exc.args[0]!r}") from None
        by = str(body.get("by") or "dashboard")[:128]
        if not isinstance(alarm_id, str) or not 1 <= len(alarm_id) <= 64:
            raise ViewInputError("alarm_id must be 1 to 64 characters")
        try:
            return publish_ack(
                self._link,
                self.settings.topics,
                site=site,
                device=device,
                alarm_id=alarm_id,
                by=by,
            )
        except BrokerError:
            raise  # unreachable, no PUBACK, or refused by the broker's ACL: a 502
        except SensorGateError as exc:
            raise ViewInputError(str(exc)) from None


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _handler(dash: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without this, Nagle and delayed ACKs
        # add ~40 ms to every keep-alive response.
        disable_nagle_algorithm = True

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("dashboard: " + fmt, *args)

        def _send(self, status: int, body: bytes, ctype: str, cache: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=300" if cache else "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, doc: Any) -> None:
            self._send(status, json.dumps(doc).encode(), "application/json")

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            args = {k: v[0] for k, v in parse_qs(url.query).items()}
            path = url.path
            try:
                if path in ("/", "/index.html"):
                    self._static("index.html")
                elif path.startswith("/static/"):
                    self._static(path[len("/static/") :])
                elif path == "/healthz":
                    self._json(200, {"ok": True})
                elif path == "/api/config":
                    self._json(
                        200,
                        {
                            "read_only": dash.read_only,
                            "prefix": dash.settings.topic_prefix,
                            "ranges": list(_RANGES),
                        },
                    )
                elif path == "/api/fleet":
                    with dash._db_lock:
                        fleet = dash.views.fleet()
                    self._json(200, {"at": _now(), "devices": [d.as_json() for d in fleet]})
                elif path == "/api/alarms":
                    self._json(200, dash.board.active())
                elif path == "/api/device":
                    self._json(
                        200,
                        dash.device_doc(
                            args.get("site", ""), args.get("device", ""), args.get("range", "1h")
                        ),
                    )
                elif path == "/api/events":
                    self._events()
                else:
                    self._json(404, {"error": f"no such page: {path}"})
            except ViewInputError as exc:
                self._json(400, {"error": str(exc)})
            except StorageError as exc:
                self._json(503, {"error": str(exc)})

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/api/ack":
                self._json(404, {"error": "no such action"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(min(length, 65536))
            if dash.read_only:
                self._json(403, {"error": "this dashboard is read-only"})
                return
            given = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
            if dash.token is None or not hmac.compare_digest(given.encode(), dash.token.encode()):
                self._json(401, {"error": "a valid token is needed to acknowledge"})
                return
            try:
                body = json.loads(raw or b"{}")
                if not isinstance(body, dict):
                    raise ViewInputError("expected a JSON object")
                self._json(202, dash.acknowledge(body))
            except (ValueError, ViewInputError) as exc:
                self._json(400, {"error": str(exc)})
            except BrokerError as exc:
                self._json(502, {"error": str(exc)})
            except StorageError as exc:
                self._json(503, {"error": str(exc)})

        def _static(self, name: str) -> None:
            if "/" in name or name.startswith(".") or not name:
                self._json(404, {"error": "no such asset"})
                return
            asset = _STATIC / name
            if not asset.is_file():
                self._json(404, {"error": "no such asset"})
                return
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            if ctype.startswith("text/") or ctype.endswith("javascript"):
                ctype += "; charset=utf-8"
            self._send(200, asset.read_bytes(), ctype, cache=name != "index.html")

        def _events(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            q = dash.hub.subscribe()
            try:
                self.wfile.write(b"retry: 2000\n\n")
                self.wfile.flush()
                while not dash._stop.is_set():
                    try:
                        frame = q.get(timeout=15)
                    except queue.Empty:
                        frame = b": keep-alive\n\n"
                    if frame is None:
                        break
                    self.wfile.write(frame)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                dash.hub.unsubscribe(q)

    return Handler


def run_dashboard(
    settings: GatewaySettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    read_only: bool = False,
    token: str | None = None,
    duration_s: float | None = None,
) -> int:
    """Serve the dashboard until Ctrl-C (or ``duration_s``); return the exit code."""
    with Dashboard(settings, host=host, port=port, read_only=read_only, token=token) as dash:
        print(f"SensorGate dashboard: {dash.url_with_token}", flush=True)
        if read_only:
            print("read-only: no acknowledge button", flush=True)
        done = threading.Event()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: done.set())
        with contextlib.suppress(KeyboardInterrupt):
            done.wait(duration_s)
    return 0
