"""HTTP hardening of the dashboard: the middleware chain in front of every route.

Outermost first:

1. **errors**: every refusal and failure answers JSON ``{"error": ...}``; view input
   400, contract 400, pool full 503 (``Retry-After``), InfluxDB down 503, the broker
   down, silent or refusing a command 502, timeout 503, anything else 500 (logged, its
   text not sent).
2. **Host allowlist** (DNS rebinding: a hostile page whose name resolves to
   127.0.0.1 must not read the API through the victim's browser): the ``Host`` name
   must be one of ``allowed_hosts`` (default: the listen address, ``localhost``,
   ``127.0.0.1``, ``::1``), else 400. ``/healthz`` is exempt (probes use pod IPs).
3. **Content-Length**: several differing values, or one that is not a plain
   non-negative integer, is 400; more than ``max_body_bytes`` is 413 before a byte
   of the body is read (a chunked body is cut off at the same size by aiohttp).
4. **access**: each route has an :class:`Access` level; ``READ`` routes need the token
   (header or session cookie) unless ``public_read``, ``WRITE`` routes need the header.
5. **timeout**: a handler taking longer than ``request_timeout_s`` is cancelled and
   answers 503 (the live event stream, long-lived by design, is exempt).

Every response carries ``Content-Security-Policy`` (same origin only, no inline
script or style, no framing), ``X-Frame-Options: DENY``, ``Referrer-Policy:
no-referrer``, ``X-Content-Type-Options: nosniff`` and ``Cross-Origin-Resource-Policy:
same-origin``. The access log (DEBUG) shows method, path without the query string,
status and time: the page URL's ``?token=`` never reaches a log.

A request the HTTP parser refuses (no ``Host``, a bad header, a bad request line)
never reaches the chain: aiohttp answers 400 in plain text itself and logs it at ERROR
with a traceback, one a client can make at will. :func:`quiet_malformed_requests` turns
that into one DEBUG line naming the error's class (its text can quote the request,
token included).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable
from enum import StrEnum

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware

from contract.errors import BrokerError, ContractError, StorageError
from gateway.dashboard.access import COOKIE, AccessToken, bearer
from gateway.dashboard.pool import PoolBusy
from gateway.dashboard.settings import DashboardSettings
from gateway.views import ViewInputError

__all__ = [
    "SECURITY_HEADERS",
    "Access",
    "AccessLog",
    "allowed_hosts",
    "host_name",
    "json_error",
    "middlewares",
    "quiet_malformed_requests",
    "security_headers",
]

log = logging.getLogger("gateway.dashboard")


class Access(StrEnum):
    """Who may call a route."""

    PUBLIC = "public"
    """The page, its assets, ``/healthz``: nothing secret."""
    READ = "read"
    """The read API: the token, unless the dashboard runs with ``public_read``."""
    WRITE = "write"
    """Actions: the token in the ``Authorization`` header, always."""


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_DIGITS = re.compile(r"[0-9]{1,19}")


def json_error(status: int, message: str, **headers: str) -> web.Response:
    """Return ``{"error": message}`` with ``status``."""
    return web.json_response({"error": message}, status=status, headers=headers or None)


def host_name(header: str | None) -> str | None:
    """Return the lower-case name of a ``Host`` header without its port (None: unusable)."""
    if not header:
        return None
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:8080
        end = header.find("]")
        if end < 0:
            return None
        name, rest = header[1:end], header[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return name
    name, sep, port = header.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        header = name
    elif ":" in header:
        return None
    return header.rstrip(".") or None


def allowed_hosts(options: DashboardSettings) -> frozenset[str]:
    """Return the ``Host`` names the server answers to."""
    if options.allowed_hosts is not None:
        names: Iterable[str] = options.allowed_hosts
    else:
        names = {"localhost", "127.0.0.1", "::1"}
        if options.host not in ("", "0.0.0.0", "::"):  # wildcards are no Host name
            names = {*names, options.host}
    return frozenset(n.strip().lower().strip("[]").rstrip(".") for n in names if n.strip())


def middlewares(
    options: DashboardSettings,
    token: AccessToken,
    access_of: Callable[[web.Request], Access],
    *,
    long_lived: frozenset[str],
) -> list[Middleware]:
    """Return the middleware chain (see the module docstring), outermost first."""
    return [
        _errors(options),
        _host_check(allowed_hosts(options)),
        _content_length(options.max_body_bytes),
        _access(options, token, access_of),
        _timeout(options.request_timeout_s, long_lived),
    ]


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """Return aiohttp's HTTP error as JSON, keeping ``Allow`` and ``Retry-After``."""
    if exc.status == 404:
        text: str | None = f"no such page: {request.path}"
    else:
        text = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else None
    resp = json_error(exc.status, text or exc.reason)
    for name in ("Allow", "Retry-After"):
        if name in exc.headers:
            resp.headers[name] = exc.headers[name]
    return resp


def _errors(options: DashboardSettings) -> Middleware:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _http_error(request, exc)
        except (ViewInputError, ContractError) as exc:
            return json_error(400, str(exc))
        except PoolBusy as exc:
            return json_error(503, str(exc), **{"Retry-After": "1"})
        except BrokerError as exc:
            # The broker unreachable, silent or refusing (its ACL): the upstream failed.
            return json_error(502, str(exc))
        except StorageError as exc:
            return json_error(503, str(exc))
        except TimeoutError:
            return json_error(503, f"the request took longer than {options.request_timeout_s:g} s")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("dashboard: %s %s failed", request.method, request.path)
            return json_error(500, "internal error (logged on the server)")

    return errors


def _host_check(hosts: frozenset[str]) -> Middleware:
    @web.middleware
    async def host_check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/healthz" and host_name(request.headers.get("Host")) not in hosts:
            return json_error(400, "this Host is not served here (see dashboard.allowed_hosts)")
        return await handler(request)

    return host_check


def _content_length(max_body_bytes: int) -> Middleware:
    @web.middleware
    async def content_length(request: web.Request, handler: Handler) -> web.StreamResponse:
        values = request.headers.getall("Content-Length", [])
        if values:
            if len({v.strip() for v in values}) > 1:
                return json_error(400, "conflicting Content-Length headers")
            value = values[0].strip()
            if not _DIGITS.fullmatch(value):
                return json_error(400, "Content-Length must be a non-negative integer")
            if int(value) > max_body_bytes:
                return json_error(
                    413, f"the body is over {max_body_bytes} bytes", Connection="close"
                )
        return await handler(request)

    return content_length


def _access(
    options: DashboardSettings, token: AccessToken, access_of: Callable[[web.Request], Access]
) -> Middleware:
    @web.middleware
    async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
        level = access_of(request)
        if level is Access.READ and not options.public_read:
            given = bearer(request.headers.get("Authorization")) or request.cookies.get(COOKIE)
            if not token.matches(given):
                return json_error(401, "the access token is needed (the URL printed at start)")
        elif level is Access.WRITE:
            if options.read_only:
                return json_error(403, "this dashboard is read-only")
            if not token.matches(bearer(request.headers.get("Authorization"))):
                return json_error(401, "a valid token is needed (Authorization: Bearer)")
        return await handler(request)

    return access


def _timeout(timeout_s: float, long_lived: frozenset[str]) -> Middleware:
    @web.middleware
    async def timeout(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in long_lived:
            return await handler(request)
        async with asyncio.timeout(timeout_s):
            return await handler(request)

    return timeout


async def security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    """Add the security headers to a response about to be sent (``on_response_prepare``)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")


class AccessLog(AbstractAccessLogger):
    """One DEBUG line per request: method, path (no query string), status, duration."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Log one request."""
        self.logger.debug(
            "dashboard: %s %s %s %.1f ms", request.method, request.path, response.status, time * 1e3
        )

    @property
    def enabled(self) -> bool:
        """Whether a line would be written (skips the work when not)."""
        return self.logger.isEnabledFor(logging.DEBUG)


class _MalformedRequests(logging.Filter):
    """Drops aiohttp's ERROR record of a request its parser refused; logs a DEBUG line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        log.debug("dashboard: refused a malformed request from %s (%s)", remote, type(exc).__name__)
        return False


_QUIET = _MalformedRequests()


def quiet_malformed_requests() -> None:
    """Log requests aiohttp's parser refuses as one DEBUG line each (idempotent)."""
    logging.getLogger("aiohttp.server").addFilter(_QUIET)
