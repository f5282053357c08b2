"""The dashboard's asyncio server against the real broker and influxd: access, hardening,
the live event stream's fan-out, and no blocking call on its event loop."""

from __future__ import annotations

import builtins
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.mqtt import MqttLink, MqttSettings
from gateway.dashboard.guard import SECURITY_HEADERS
from gateway.dashboard.server import Dashboard
from gateway.settings import GatewaySettings
from tests.integration.conftest import wait_for
from tests.integration.dashboard_kit import SseReader, alarm_events, raw_request
from tests.integration.dashboard_load import TOKEN_ENV
from tests.integration.views_kit import alarm_line, reading_line, write

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t0k-3n-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
READ_ROUTES = [
    "api/config",
    "api/fleet",
    "api/alarms",
    "api/device?site=plant&device=pump-1&range=1h",
    "api/stats",
    "api/no-such-route",
]


@pytest.fixture
def dash(gateway_settings: GatewaySettings) -> Iterator[Dashboard]:
    with Dashboard(gateway_settings, port=0, token=TOKEN, poll_s=0.5) as running:
        yield running


@pytest.fixture
def link(gateway_settings: GatewaySettings) -> Iterator[MqttLink]:
    m = gateway_settings.mqtt
    with MqttLink(MqttSettings(host=m.host, port=m.port)) as connected:
        yield connected


def _events_status(url: str, headers: dict[str, str]) -> int:
    with httpx.stream("GET", url + "api/events", headers=headers, timeout=10) as resp:
        return resp.status_code


def test_every_api_route_needs_the_token_by_header_or_session_cookie(dash: Dashboard) -> None:
    for route in READ_ROUTES:
        assert httpx.get(dash.url + route).status_code == 401, route
        wrong = {"Authorization": "Bearer not-it"}
        assert httpx.get(dash.url + route, headers=wrong).status_code == 401, route
        expected = 404 if route.endswith("no-such-route") else 200
        assert httpx.get(dash.url + route, headers=AUTH).status_code == expected, route
    assert _events_status(dash.url, {}) == 401
    assert _events_status(dash.url, AUTH) == 200

    # The page's way: POST /api/session with the header sets an HttpOnly cookie that the
    # event stream (EventSource sends no header) and the reads then carry.
    assert httpx.post(dash.url + "api/session").status_code == 401
    with httpx.Client(base_url=dash.url) as browser:
        resp = browser.post("api/session", headers=AUTH)
        assert resp.status_code == 204
        cookie = resp.headers["set-cookie"]
        for flag in ("HttpOnly", "SameSite=Strict", "Path=/api/"):
            assert flag in cookie
        for route in READ_ROUTES[:-1]:
            assert browser.get(route).status_code == 200, route
        assert _events_status(dash.url, {"Cookie": cookie.split(";")[0]}) == 200
        # Acknowledging takes the header only: a cookie alone cannot make a browser act.
        body = {"site": "plant", "device": "pump-1", "alarm_id": "a1"}
        assert browser.post("api/ack", json=body).status_code == 401
        assert browser.post("api/ack", json=body, headers=AUTH).status_code == 202

    # Nothing secret without a token: the page, its assets, the health check.
    for route in ("", "index.html", "static/app.js", "static/app.css", "healthz"):
        assert httpx.get(dash.url + route).status_code == 200, route


def test_public_read_opens_the_reads_only(gateway_settings: GatewaySettings) -> None:
    with Dashboard(gateway_settings, port=0, token=TOKEN, public_read=True) as dash:
        for route in READ_ROUTES[:-1]:
            assert httpx.get(dash.url + route).status_code == 200, route
        assert _events_status(dash.url, {}) == 200
        body = {"site": "plant", "device": "pump-1", "alarm_id": "a1"}
        assert httpx.post(dash.url + "api/ack", json=body).status_code == 401
        assert httpx.post(dash.url + "api/ack", json=body, headers=AUTH).status_code == 202
    with Dashboard(gateway_settings, port=0, read_only=True, public_read=True) as ro:
        assert ro.token.value is None
        assert ro.url_with_token == ro.url
        assert httpx.get(ro.url + "api/alarms").status_code == 200
        body = {"site": "plant", "device": "pump-1", "alarm_id": "a1"}
        assert httpx.post(ro.url + "api/ack", json=body).status_code == 403


def test_a_host_not_allowed_is_refused(dash: Dashboard, gateway_settings: GatewaySettings) -> None:
    port = dash.url.rsplit(":", 1)[1].strip("/")
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.2", "[::2]"):
        for route in ("", "api/config"):
            resp = httpx.get(dash.url + route, headers={**AUTH, "Host": host})
            assert resp.status_code == 400, (host, route)
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "LOCALHOST"):
        assert httpx.get(dash.url + "api/config", headers={**AUTH, "Host": host}).status_code == 200
    # Probes call /healthz by address: it is exempt (and tells nothing).
    assert httpx.get(dash.url + "healthz", headers={"Host": "10.1.2.3:8080"}).status_code == 200
    status, _ = raw_request(dash.url, b"GET /api/config HTTP/1.0\r\n\r\n")  # no Host at all
    assert status == 400

    options = gateway_settings.dashboard.model_copy(update={"allowed_hosts": ("dash.example",)})
    with Dashboard(gateway_settings, options=options, port=0, token=TOKEN) as named:
        ok = {**AUTH, "Host": "dash.example:443"}
        assert httpx.get(named.url + "api/config", headers=ok).status_code == 200
        assert httpx.get(named.url + "api/config", headers=AUTH).status_code == 400  # 127.0.0.1


def test_bad_content_length_is_refused(dash: Dashboard) -> None:
    host = dash.url.split("//")[1].strip("/")
    head = f"POST /api/ack HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
    body = b'{"site": "plant", "device": "pump-1", "alarm_id": "a1"}'
    cases = {
        "-1": 400,
        "abc": 400,
        "+5": 400,
        "1e3": 400,
        " ": 400,
        "99999999999999999999999": 400,
        str(10**9): 413,
        "20000": 413,
    }
    for value, expected in cases.items():
        request = f"{head}Content-Length: {value}\r\nConnection: close\r\n\r\n".encode() + body
        status, answer = raw_request(dash.url, request)
        assert status == expected, (value, answer[:200])
    both = f"{head}Content-Length: {len(body)}\r\nContent-Length: 3\r\n\r\n".encode() + body
    assert raw_request(dash.url, both)[0] == 400
    chunked = (
        f"{head}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
        + b"".join(b"4000\r\n" + b"x" * 0x4000 + b"\r\n" for _ in range(2))
        + b"0\r\n\r\n"
    )
    assert raw_request(dash.url, chunked)[0] == 413
    fine = f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
    assert raw_request(dash.url, fine)[0] == 202


def test_security_headers_on_every_kind_of_answer(dash: Dashboard) -> None:
    answers = [
        httpx.get(dash.url),
        httpx.get(dash.url + "static/app.js"),
        httpx.get(dash.url + "api/config", headers=AUTH),
        httpx.get(dash.url + "api/config"),  # 401
        httpx.get(dash.url + "nowhere"),  # 404
        httpx.get(dash.url + "api/config", headers={"Host": "evil.example"}),  # 400
        httpx.post(dash.url + "api/ack", content=b"{", headers=AUTH),  # 400
    ]
    with httpx.stream("GET", dash.url + "api/events", headers=AUTH, timeout=10) as stream:
        answers.append(stream)
        for resp in answers:
            for name, value in SECURITY_HEADERS.items():
                assert resp.headers.get(name) == value, (resp.url, resp.status_code, name)
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp
    assert SECURITY_HEADERS["X-Frame-Options"] == "DENY"
    assert SECURITY_HEADERS["Referrer-Policy"] == "no-referrer"


def test_one_alarm_on_mqtt_reaches_every_open_stream(dash: Dashboard, link: MqttLink) -> None:
    session = httpx.post(dash.url + "api/session", headers=AUTH).headers["set-cookie"]
    readers = [SseReader(dash.url, AUTH) for _ in range(3)]
    readers += [SseReader(dash.url, {"Cookie": session.split(";")[0]}) for _ in range(3)]
    try:
        for reader in readers:
            reader.wait(
                "the current state first", lambda ev: {"alarms", "feed"} <= {e for e, _ in ev}
            )
        assert dash.stats()["streams"] == 6
        settings = dash.settings
        raised, cleared = alarm_events("fanout-1", "plant", "pump-1")
        link.publish(settings.topics.alarms("plant", "pump-1"), raised, qos=1).wait(5)

        def has(alarm_id: str, present: bool) -> object:
            def check(events: list[tuple[str, str]]) -> bool:
                alarms = [json.loads(d) for e, d in events if e == "alarms"]
                return bool(alarms) and (
                    any(a["alarm_id"] == alarm_id for a in alarms[-1]) is present
                )

            return check

        for reader in readers:
            reader.wait("the raised alarm", has("fanout-1", True))  # type: ignore[arg-type]
        link.publish(settings.topics.alarms("plant", "pump-1"), cleared, qos=1).wait(5)
        for reader in readers:
            reader.wait("the clear", has("fanout-1", False))  # type: ignore[arg-type]
        assert dash.stats()["dropped_streams"] == 0
    finally:
        for reader in readers:
            reader.close()


def test_a_stalled_stream_is_dropped_and_does_not_hold_up_the_others(
    gateway_settings: GatewaySettings,
) -> None:
    options = gateway_settings.dashboard.model_copy(update={"stream_queue": 4})
    with Dashboard(gateway_settings, options=options, port=0, token=TOKEN, mqtt=False) as dash:
        fast = SseReader(dash.url, AUTH)
        fast.wait("the first frames", lambda ev: len(ev) >= 2)
        # A browser that stops reading: a tiny receive buffer and no recv() at all.
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        host, port = dash.url.split("//")[1].strip("/").split(":")
        stalled.connect((host, int(port)))
        stalled.sendall(
            f"GET /api/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        wait_for(lambda: dash.stats()["streams"] == 2, 10, "both streams open")
        big = {"pad": "x" * 256_000}
        try:
            for i in range(120):  # ~30 MB: beyond any socket buffer, then the queue
                dash.call(lambda core, i=i: core.hub.publish("bulk", {**big, "i": i}))
                fast.wait(f"bulk frame {i}", lambda ev, i=i: sum(e == "bulk" for e, _ in ev) > i)
                if dash.stats()["dropped_streams"]:
                    break
            wait_for(lambda: dash.stats()["dropped_streams"] == 1, 30, "the stalled stream dropped")
            assert dash.stats()["streams"] == 1
            # The fast one still gets everything, at once.
            dash.call(lambda core: core.hub.publish("bulk", {"last": True}))
            fast.wait("the frame after the drop", lambda ev: '"last"' in ev[-1][1])
        finally:
            stalled.close()
            fast.close()


def test_no_blocking_call_runs_on_the_event_loop(
    gateway_settings: GatewaySettings,
    link: MqttLink,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The dashboard's loop in asyncio debug mode, under load from another process
    (event streams, every API route, acknowledgements, bad requests, 80 alarm events).

    The calls that block by nature (a sleep, a connect, a name lookup, a file opened, an
    InfluxDB query, any synchronous HTTP request) are caught on the loop's thread
    whatever they take, and anything else debug mode reports (a coroutine never
    awaited, a task destroyed while pending, a non-thread-safe call) fails the test.
    asyncio's "Executing <...> took 0.123 seconds" measures wall time, which a loaded
    2-core machine stretches whatever the code does: printed, not asserted.
    """
    from gateway.influx.query import InfluxQL

    now = datetime.now(UTC)
    lines = [
        reading_line(
            "plant", f"pump-{d}", "env", "temperature", 20 + k % 5, now - timedelta(seconds=10 * k)
        )
        for d in range(50)
        for k in range(60)
    ]
    lines += [
        alarm_line(site="plant", device=f"pump-{d}", metric="temperature", rule="hot",
                   severity="major", state="active", alarm_id=f"stored-{d}", when=now)
        for d in range(20)
    ]  # fmt: skip
    write(gateway_settings.influx, lines)
    blocking: list[str] = []

    def watch(name: str, real: Any) -> Any:
        def watched(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread().name == "dashboard-loop":
                blocking.append(name)
            return real(*args, **kwargs)

        return watched

    for target, name in [
        (time, "sleep"),
        (socket, "create_connection"),
        (socket, "getaddrinfo"),
        (builtins, "open"),
        (InfluxQL, "query"),
        (httpx.Client, "send"),
    ]:
        monkeypatch.setattr(target, name, watch(f"{target.__name__}.{name}", getattr(target, name)))
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        _debug_run(gateway_settings, link, "dbg")
    said = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    slow = [m for m in said if m.startswith("Executing ") and " took " in m]
    print(f"{len(slow)} callbacks over 0.1 s of wall time", *slow[:5], sep="\n")
    assert not [m for m in said if m not in slow], said[:5]
    assert not blocking, sorted(set(blocking))


def _debug_run(settings: GatewaySettings, link: MqttLink, tag: str) -> None:
    with Dashboard(settings, port=0, token=TOKEN, poll_s=0.3, debug=True) as dash:
        load = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.dashboard_load", dash.url,
             "--streams", "5", "--browsers", "3", "--seconds", "10"],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), TOKEN_ENV: TOKEN},
        )  # fmt: skip
        try:
            assert load.stdout is not None
            assert json.loads(load.stdout.readline()) == {"ready": True}
            for i in range(40):
                raised, cleared = alarm_events(f"{tag}-{i}", "plant", f"pump-{i % 7}")
                topic = settings.topics.alarms("plant", f"pump-{i % 7}")
                link.publish(topic, raised, qos=1).wait(5)
                link.publish(topic, cleared, qos=1).wait(5)
            seen = json.loads(load.stdout.readline())
            assert load.wait(30) == 0
        finally:
            load.kill()
            load.wait()
            if load.stdout is not None:
                load.stdout.close()
    assert seen["statuses"].get("200", 0) > 0
    assert seen["statuses"].get("202", 0) > 0  # acknowledgements went out
    for stream in seen["streams"]:
        assert f"{tag}-39" in stream["ever"]
        assert f"{tag}-39" not in stream["last"]
