"""Hostile HTTP requests, generated with hypothesis, against the real dashboard server.

Raw bytes on a socket (the way a browser, a scanner or a rebinding page would send
them): any method, path, query, Host, token, cookie, Content-Length and body. Whatever
arrives, the server answers, never with a 500, never with data of the API to a caller
without the token or from a Host it does not serve, always with its security headers;
and it keeps serving afterwards.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.dashboard.guard import SECURITY_HEADERS, host_name
from gateway.dashboard.server import Dashboard
from gateway.settings import GatewaySettings

pytestmark = pytest.mark.integration

TOKEN = "fuzz-t0ken-for-tests"
MAX_BODY = 1024
DEFAULT_HOSTS = {"127.0.0.1", "localhost", "::1"}
ACK = b'{"site": "plant", "device": "pump-1", "alarm_id": "a1", "by": "fuzz"}'
ROUTES = [
    "/", "/healthz", "/static/app.js", "/static/../../etc/passwd", "/static/%2e%2e/x",
    "/api/config", "/api/fleet", "/api/alarms", "/api/device", "/api/stats",
    "/api/session", "/api/ack", "/api/events", "/api/", "/api/nowhere", "//api/config",
]  # fmt: skip
# Printable ASCII without space, "#", CR and LF: what can stand in a request line.
_PATH_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#")
# A header value: printable ASCII and tabs (CR/LF would end the header).
_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


@dataclass(frozen=True)
class Probe:
    method: str
    path: str
    host: str | None  # None: no Host header; "" stands for the dashboard's own
    authorization: str | None
    cookie: str | None
    content_length: str | None  # None: as long as the body; "-": no header
    body: bytes

    def request(self, own_host: str) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1"]
        if self.host is not None:
            lines.append(f"Host: {self.host or own_host}")
        if self.authorization is not None:
            lines.append(f"Authorization: {self.authorization}")
        if self.cookie is not None:
            lines.append(f"Cookie: {self.cookie}")
        if self.content_length is None:
            lines.append(f"Content-Length: {len(self.body)}")
        elif self.content_length != "-":
            lines.append(f"Content-Length: {self.content_length}")
        lines.append("Connection: close")
        body = b"" if self.content_length == "-" else self.body
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _bad_length() -> st.SearchStrategy[str]:
    # Values a server must refuse without waiting for a body: not a plain non-negative
    # integer, or over the limit (a plain integer under it would be a truncated body,
    # which only makes the server wait).
    return st.one_of(
        st.sampled_from(["-1", "abc", "+5", "1e3", "0x10", "1_0", "٣"]),
        _VALUE.filter(lambda v: not v.strip().isdigit()),
        st.integers(MAX_BODY + 1, 10**30).map(str),
    )


def _mostly(
    common: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any], *, share: int = 70
) -> st.SearchStrategy[Any]:
    # ``one_of`` leans to its first branch; a percentage draw keeps the mix, so that most
    # requests get past the parser and the Host check to the routes and their checks.
    return st.integers(0, 99).flatmap(lambda i: common if i < share else hostile)


probes = st.builds(
    Probe,
    method=_mostly(
        st.sampled_from(["GET", "POST", "HEAD", "PUT", "OPTIONS", "DELETE"]),
        st.text(st.characters(min_codepoint=0x41, max_codepoint=0x5A), min_size=1, max_size=8),
        share=85,
    ),
    path=_mostly(
        st.sampled_from(ROUTES),
        st.one_of(
            st.tuples(st.sampled_from(ROUTES), st.text(_PATH_CHARS, max_size=40)).map(
                lambda rq: f"{rq[0]}?{rq[1]}"
            ),
            st.text(_PATH_CHARS, max_size=60).map(lambda p: "/" + p),
        ),
        share=60,
    ),
    host=_mostly(
        st.just(""),
        st.one_of(
            st.none(),
            st.sampled_from(["evil.example", "127.0.0.1.nip.io", "localhost.", "[::1]", "0"]),
            _VALUE,
        ),
        share=60,
    ),
    authorization=_mostly(
        st.sampled_from([f"Bearer {TOKEN}", f"bearer  {TOKEN} "]),
        st.one_of(st.none(), _VALUE.map(lambda v: f"Bearer {v}"), _VALUE),
        share=50,
    ),
    cookie=_mostly(st.none(), st.one_of(st.just(f"sg_session={TOKEN}"), _VALUE), share=60),
    content_length=_mostly(st.none(), st.one_of(st.just("-"), _bad_length()), share=80),
    body=st.one_of(
        st.binary(max_size=MAX_BODY),
        st.dictionaries(
            st.sampled_from(["site", "device", "alarm_id", "by", "note", "x"]),
            st.one_of(_VALUE, st.integers(), st.none(), st.lists(st.integers(), max_size=3)),
        ).map(lambda d: httpx.Request("POST", "http://x", json=d).content),
    ),
)


def _send(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    status_line, *header_lines = head.split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    # The HTTP parser's own refusals answer as HTTP/1.0.
    status = int(status_line.split(" ", 2)[1]) if status_line.startswith("HTTP/1.") else 0
    return status, headers, data


@pytest.fixture
def dash(gateway_settings: GatewaySettings) -> Iterator[Dashboard]:
    options = gateway_settings.dashboard.model_copy(update={"max_body_bytes": MAX_BODY})
    with Dashboard(gateway_settings, options=options, port=0, token=TOKEN) as running:
        yield running


def test_hostile_requests_get_an_answer_and_nothing_more(
    dash: Dashboard, caplog: pytest.LogCaptureFixture
) -> None:
    own_host = dash.url.split("//")[1].strip("/")
    caplog.set_level(logging.WARNING)

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(probes)
    # The cases the access rules exist for, whatever the draw: a rebinding page's Host
    # with the token, the cookie alone on acknowledge (CSRF), a session, an acknowledge.
    @example(Probe("GET", "/api/fleet", "evil.example", f"Bearer {TOKEN}", None, None, b""))
    @example(Probe("GET", "/api/alarms", "", None, f"sg_session={TOKEN}", None, b""))
    @example(Probe("POST", "/api/ack", "", None, f"sg_session={TOKEN}", None, ACK))
    @example(Probe("POST", "/api/ack", "", f"Bearer {TOKEN}", None, None, ACK))
    @example(Probe("POST", "/api/session", "", f"Bearer {TOKEN}", None, None, b""))
    def check(probe: Probe) -> None:
        status, headers, raw = _send(dash.url, probe.request(own_host))
        assert status, f"no answer to {probe}: {raw[:200]!r}"
        assert status != 500, (probe, raw[:300])
        body = raw.split(b"\r\n\r\n", 1)[-1]
        kind = headers.get("content-type", "")
        healthz = body.startswith(b'{"ok"') or (
            probe.method == "HEAD" and probe.path.split("?")[0] == "/healthz"  # no body
        )
        # Data of the API: JSON (but /healthz's) or the event stream, or a session.
        api_data = 200 <= status < 300 and (
            ("json" in kind and not healthz) or "event-stream" in kind or "set-cookie" in headers
        )
        if api_data:
            assert probe.host == "" or host_name(probe.host) in DEFAULT_HOSTS, (probe, status)
            assert TOKEN in (probe.authorization or "") or (
                f"sg_session={TOKEN}" in (probe.cookie or "")
            ), (probe, status)
        if status == 202:  # an acknowledgement went out: by the header alone (CSRF)
            assert TOKEN in (probe.authorization or ""), probe
        if probe.content_length not in (None, "-") and status < 300:
            pytest.fail(f"a bad Content-Length was served: {probe}")
        if b'{"error"' in raw or status < 400:
            # An answer of the application (the HTTP parser's own 400s carry none).
            for name, value in SECURITY_HEADERS.items():
                assert headers.get(name.lower()) == value, (probe, name, raw[:300])

    check()
    assert httpx.get(dash.url + "healthz").status_code == 200
    assert httpx.get(
        dash.url + "api/config", headers={"Authorization": f"Bearer {TOKEN}"}
    ).is_success
    # Nothing above DEBUG: a client must not be able to fill the log (aiohttp's
    # parser logs each malformed request at ERROR with a traceback unless told not to).
    assert not [f"{r.name}: {r.getMessage()}" for r in caplog.records]
