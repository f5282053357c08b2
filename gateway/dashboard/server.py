"""The dashboard's server: aiohttp on an asyncio loop, in-process or stand-alone.

:class:`Dashboard` serves the routes of :mod:`gateway.dashboard.routes` behind the
hardening of :mod:`gateway.dashboard.guard`, with the live alarm feed of
:mod:`gateway.dashboard.feed`. Two ways to run it:

- in another program (the gateway, a test): :meth:`Dashboard.start` runs the loop on
  its own thread and returns once it serves; :meth:`Dashboard.stop` ends it;
- on its own (``sensorgate dashboard``): :func:`run_dashboard` runs the loop on the
  main thread until SIGINT or SIGTERM.

It has its own port, apart from the gateway's ``/metrics``: the page may be shown to
operators while metrics stay internal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from contract.errors import ServiceError
from gateway.dashboard.access import AccessToken
from gateway.dashboard.core import DashboardCore, load_static
from gateway.dashboard.guard import AccessLog, quiet_malformed_requests
from gateway.dashboard.routes import build_app
from gateway.dashboard.settings import DashboardSettings
from gateway.influx.query import InfluxQL
from gateway.settings import GatewaySettings

__all__ = ["Dashboard", "run_dashboard"]

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0


class Dashboard:
    """The web dashboard: HTTP server, live alarm feed and InfluxDB poller on one loop.

    Options default to ``settings.dashboard``; keyword arguments override them (a
    ``token`` given here is for programs and tests: people give it through the
    environment or a file).
    """

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        options: DashboardSettings | None = None,
        host: str | None = None,
        port: int | None = None,
        read_only: bool | None = None,
        public_read: bool | None = None,
        token: str | None = None,
        poll_s: float | None = None,
        offline_after_s: float | None = None,
        mqtt: bool = True,
        debug: bool = False,
    ) -> None:
        base = options or settings.dashboard
        given = {
            "host": host,
            "port": port,
            "read_only": read_only,
            "public_read": public_read,
            "poll_s": poll_s,
            "offline_after_s": offline_after_s,
        }
        updates: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if token is not None:
            updates.update(token=SecretStr(token), token_file=None)
        self.settings = settings
        self.options = DashboardSettings.model_validate({**dict(base), **updates})
        self.token = AccessToken.from_settings(self.options)
        self._mqtt = mqtt
        self._debug = debug
        self.core: DashboardCore | None = None
        self._address: tuple[str, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    # -- where --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Where the page is (once serving)."""
        if self._address is None:
            raise ServiceError("the dashboard is not serving yet")
        host, port = self._address
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    @property
    def url_with_token(self) -> str:
        """The page URL that also hands the browser the token (keep it to yourself)."""
        return self.url if self.token.value is None else f"{self.url}?token={self.token.value}"

    # -- in another program: a loop thread ---------------------------------------------
    def start(self) -> Dashboard:
        """Serve on a thread of its own; return once serving (raise if it cannot)."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self._run_until_stopped(ready.set), debug=self._debug or None)
            except BaseException as exc:  # surfaced in start(), or logged when later
                failed.append(exc)
                if ready.is_set():
                    log.exception("dashboard: stopped on an error")
            finally:
                ready.set()

        self._thread = threading.Thread(target=run, name="dashboard-loop", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise ServiceError(f"the dashboard did not start within {START_TIMEOUT_S:.0f} s")
        if failed:
            raise failed[0]
        log.info("dashboard at %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving (in-process mode) and wait for the loop thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(15)
            self._thread = None

    def __enter__(self) -> Dashboard:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def call(self, fn: Callable[[DashboardCore], Any], timeout_s: float = 10.0) -> Any:
        """Run ``fn(core)`` on the dashboard's loop and return its result (from any thread)."""
        loop, core = self._loop, self.core
        if loop is None or core is None:
            raise ServiceError("the dashboard is not running")

        async def on_loop() -> Any:
            return fn(core)

        return asyncio.run_coroutine_threadsafe(on_loop(), loop).result(timeout_s)

    def stats(self) -> dict[str, Any]:
        """Figures of the running dashboard (see :meth:`DashboardCore.stats`)."""
        return dict(self.call(lambda core: core.stats()))

    # -- on the loop --------------------------------------------------------------------
    async def _run_until_stopped(self, on_ready: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        if self._debug:
            self._loop.slow_callback_duration = 0.1
        self._stop = asyncio.Event()
        await self.serve(self._stop, on_ready=on_ready)

    async def serve(self, stop: asyncio.Event, *, on_ready: Callable[[], None]) -> None:
        """Serve on the running loop until ``stop`` is set; call ``on_ready`` once serving."""
        # Reading the assets and making the InfluxDB client (its TLS context loads a CA
        # bundle) are blocking: off the loop.
        static = await asyncio.to_thread(load_static)
        client = await asyncio.to_thread(InfluxQL, self.settings.influx)
        core = DashboardCore(
            self.settings,
            self.options,
            self.token,
            mqtt=self._mqtt,
            static=static,
            client=client,
        )
        self.core = core
        quiet_malformed_requests()
        background = asyncio.create_task(core.run(), name="dashboard-core")
        background.add_done_callback(_log_failure)
        runner = web.AppRunner(
            build_app(core),
            access_log_class=AccessLog,
            access_log=logging.getLogger("gateway.dashboard.access"),
            handler_cancellation=True,
            shutdown_timeout=2.0,
        )
        try:
            await core.started()
            await runner.setup()
            site = web.TCPSite(runner, self.options.host, self.options.port)
            try:
                await site.start()
            except OSError as exc:
                raise ServiceError(
                    f"the dashboard cannot listen on {self.options.host}:{self.options.port}:"
                    f" {exc.strerror or exc}"
                ) from None
            self._address = runner.addresses[0][:2]
            on_ready()
            await stop.wait()
        finally:
            core.hub.close()
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background
            await runner.cleanup()
            await core.close()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("dashboard: the live feed stopped: %r", task.exception())


def run_dashboard(
    settings: GatewaySettings,
    *,
    options: DashboardSettings | None = None,
    duration_s: float | None = None,
    mqtt: bool = True,
) -> int:
    """Serve the dashboard on this thread until SIGINT/SIGTERM (or ``duration_s``).

    Prints the page's URL first; with the token in it only when the token was made
    here (one given through the environment or a file is not shown again).
    """
    dash = Dashboard(settings, options=options, mqtt=mqtt)

    def ready() -> None:
        shown = dash.url_with_token if dash.token.generated else dash.url
        print(f"SensorGate dashboard: {shown}", flush=True)
        if dash.options.read_only:
            print("read-only: no acknowledge button", flush=True)
        if dash.options.public_read:
            print("public read: the read API answers without the token", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if duration_s is not None:
            loop.call_later(duration_s, stop.set)
        await dash.serve(stop, on_ready=ready)

    asyncio.run(main())
    return 0
