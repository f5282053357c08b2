"""The dashboard's routes on aiohttp, and who may call each (:class:`~.guard.Access`).

=====================  ======  ====================================================
route                  access  what
=====================  ======  ====================================================
``GET /``              public  the page (``/index.html`` too); ``/static/{name}``
``GET /healthz``       public  ``{"ok": true, "feed": state}``
``GET /api/config``    read    read-only and public-read flags, prefix, ranges, feed
``GET /api/fleet``     read    devices: online/offline, last seen, latest values
``GET /api/alarms``    read    active alarms (InfluxDB, kept fresh by MQTT events)
``GET /api/device``    read    ``?site=&device=&range=1h``: status, series, band, alarms
``GET /api/events``    read    server-sent events: ``alarms``, ``fleet``, ``feed``
``GET /api/stats``     read    streams, dropped streams, feed, blocking calls
``POST /api/session``  header  sets the session cookie for the token in the header
``POST /api/ack``      write   ``{"site","device","alarm_id","by"}``: the acknowledge
                               command over MQTT (202; 403 when read-only)
=====================  ======  ====================================================
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from gateway.dashboard.access import COOKIE, bearer
from gateway.dashboard.core import RANGES, DashboardCore
from gateway.dashboard.guard import Access, json_error, middlewares, security_headers

__all__ = ["CORE", "EVENTS_PATH", "build_app"]

CORE = web.AppKey("core", DashboardCore)
EVENTS_PATH = "/api/events"

_ACCESS = {
    "/": Access.PUBLIC,
    "/index.html": Access.PUBLIC,
    "/static/{name}": Access.PUBLIC,
    "/healthz": Access.PUBLIC,
    "/api/session": Access.PUBLIC,  # checks the header itself (works when read-only)
    "/api/ack": Access.WRITE,
}


def _access_of(request: web.Request) -> Access:
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else request.path
    if canonical in _ACCESS:
        return _ACCESS[canonical]
    # Every other /api/ route, and any unknown one: the token (a probe learns nothing).
    return Access.READ if canonical.startswith("/api/") else Access.PUBLIC


def build_app(core: DashboardCore) -> web.Application:
    """Return the aiohttp application serving ``core``."""
    options = core.options
    app = web.Application(
        middlewares=middlewares(
            options, core.token, _access_of, long_lived=frozenset({EVENTS_PATH})
        ),
        client_max_size=options.max_body_bytes,
    )
    app[CORE] = core
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/", _index)
    app.router.add_get("/index.html", _index)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/api/config", _config)
    app.router.add_get("/api/fleet", _fleet)
    app.router.add_get("/api/alarms", _alarms)
    app.router.add_get("/api/device", _device)
    app.router.add_get(EVENTS_PATH, _events)
    app.router.add_get("/api/stats", _stats)
    app.router.add_post("/api/session", _session)
    app.router.add_post("/api/ack", _ack)
    return app


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.json_response(doc, status=status)


def _raw_json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


async def _index(request: web.Request) -> web.StreamResponse:
    return _asset(request, "index.html")


async def _static(request: web.Request) -> web.StreamResponse:
    return _asset(request, request.match_info["name"])


def _asset(request: web.Request, name: str) -> web.StreamResponse:
    found = request.app[CORE].static.get(name)
    if found is None:
        return json_error(404, "no such asset")
    body, ctype = found
    cache = "no-store" if name == "index.html" else "max-age=300"
    return web.Response(body=body, headers={"Content-Type": ctype, "Cache-Control": cache})


async def _healthz(request: web.Request) -> web.StreamResponse:
    return _json({"ok": True, "feed": request.app[CORE].feed_state.state})


async def _config(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    return _json(
        {
            "read_only": core.options.read_only,
            "public_read": core.options.public_read,
            "prefix": core.settings.topic_prefix,
            "ranges": list(RANGES),
            "feed": core.feed_state.as_json(),
        }
    )


async def _fleet(request: web.Request) -> web.StreamResponse:
    return _raw_json(await request.app[CORE].fleet_json())


async def _alarms(request: web.Request) -> web.StreamResponse:
    return _json(request.app[CORE].board.active())


async def _device(request: web.Request) -> web.StreamResponse:
    q = request.query
    body = await request.app[CORE].device_json(
        q.get("site", ""), q.get("device", ""), q.get("range", "1h")
    )
    return _raw_json(body)


async def _stats(request: web.Request) -> web.StreamResponse:
    return _json(request.app[CORE].stats())


async def _session(request: web.Request) -> web.StreamResponse:
    token = request.app[CORE].token
    if token.value is None:  # read-only and public: nothing to show
        return web.Response(status=204)
    if not token.matches(bearer(request.headers.get("Authorization"))):
        return json_error(401, "a valid token is needed (Authorization: Bearer)")
    resp = web.Response(status=204)
    resp.set_cookie(
        COOKIE,
        token.value,
        path="/api/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return resp


async def _ack(request: web.Request) -> web.StreamResponse:
    raw = await request.read()  # bounded by client_max_size: 413 beyond
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        return json_error(400, f"expected a JSON object: {exc}")
    if not isinstance(body, dict):
        return json_error(400, "expected a JSON object")
    return _json(await request.app[CORE].acknowledge(body), status=202)


def _may_wait(request: web.Request, size: int) -> bool:
    """Whether writing ``size`` more bytes to this response may wait (drain)."""
    transport = request.transport
    if transport is None or request.protocol.writing_paused:
        # Paused above the high-water mark, the transport stays paused until its
        # buffer falls below the low mark: a write now waits for the browser.
        return True
    return transport.get_write_buffer_size() + size > transport.get_write_buffer_limits()[1]


async def _events(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    options = core.options
    transport = request.transport

    def hang_up() -> None:
        if transport is not None:
            transport.close()

    stream = core.hub.subscribe(hang_up)
    if stream is None:
        return json_error(503, f"{options.max_streams} live streams are open; try again later")
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a proxy in front must not buffer the stream
        }
    )
    try:
        await resp.prepare(request)
        await resp.write(b"retry: 2000\n\n")
        while not stream.dropped:
            item = await stream.queue.get()  # keep-alives come through the hub too
            if item is None:
                break
            if _may_wait(request, len(item.data)):
                # This write may wait for the browser to read: one that stops reading
                # is cut off after the request timeout. Otherwise a write cannot wait,
                # and goes without a timer, the cost of which would dominate a fan-out
                # to many streams.
                async with asyncio.timeout(options.request_timeout_s):
                    await resp.write(item.data)
            else:
                await resp.write(item.data)
            core.hub.wrote(item)
    except ConnectionError:
        pass
    except TimeoutError:
        core.hub.drop(stream)  # closes the connection: nothing left to flush
    finally:
        core.hub.unsubscribe(stream)
    return resp
