"""What the dashboard serves, on one event loop: board, hub, feed, poller, queries.

:class:`DashboardCore` is built and run inside the loop that serves HTTP. The
InfluxDB reads (the synchronous :class:`~gateway.views.Views` shared with the CLI) and
the encoding of their large JSON run on the bounded :class:`BlockingPool`; only small
work (applying an alarm event, encoding the active list) runs on the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from contract.durations import parse_duration
from contract.errors import SensorGateError, StorageError
from gateway.dashboard.access import AccessToken
from gateway.dashboard.board import AlarmBoard
from gateway.dashboard.feed import AlarmFeed, FeedState
from gateway.dashboard.hub import Hub
from gateway.dashboard.pool import BlockingPool
from gateway.dashboard.settings import DashboardSettings
from gateway.influx.query import InfluxQL
from gateway.ops.acknowledge import ack_message
from gateway.settings import GatewaySettings
from gateway.views import AlarmFilter, ViewInputError, Views
from gateway.views.rows import utc_iso

__all__ = ["RANGES", "DashboardCore", "StaticAsset", "load_static"]

log = logging.getLogger(__name__)

RANGES = ("15m", "1h", "6h", "24h", "7d")
_STATIC = resources.files("gateway.dashboard") / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

StaticAsset = tuple[bytes, str]
"""An asset's bytes and content type."""


def load_static() -> dict[str, StaticAsset]:
    """Read the page's assets (package data) once: no file is read while serving."""
    assets = {}
    for entry in _STATIC.iterdir():
        name = entry.name
        suffix = name[name.rfind(".") :] if "." in name else ""
        if entry.is_file() and not name.startswith(".") and suffix in _TYPES:
            assets[name] = (entry.read_bytes(), _TYPES[suffix])
    return assets


class DashboardCore:
    """The dashboard's parts on one loop; :meth:`run` until cancelled."""

    def __init__(
        self,
        settings: GatewaySettings,
        options: DashboardSettings,
        token: AccessToken,
        *,
        mqtt: bool = True,
        static: dict[str, StaticAsset],
        client: InfluxQL,
    ) -> None:
        self.settings = settings
        self.options = options
        self.token = token
        self.static = static
        self.board = AlarmBoard()
        self.hub = Hub(queue_size=options.stream_queue, max_streams=options.max_streams)
        self.pool = BlockingPool(workers=options.workers, queued=options.queued_calls)
        self._client = client
        self.views = Views(self._client, offline_after=timedelta(seconds=options.offline_after_s))
        self.feed: AlarmFeed | None = None
        if mqtt:
            self.feed = AlarmFeed(
                settings,
                self.board,
                on_board_change=self.publish_alarms,
                on_state=self._publish_feed,
            )
        self._fleet_json = ""
        self.feed_state: FeedState = (
            self.feed.state if self.feed else FeedState("off", utc_iso(), "", "no MQTT configured")
        )
        self.hub.publish("feed", self.feed_state.as_json())

    # -- running --------------------------------------------------------------------
    async def run(self) -> None:
        """Run the feed and the InfluxDB poller until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            if self.feed is not None:
                tasks.create_task(self.feed.run(), name="dashboard-feed")
            tasks.create_task(self._poll(), name="dashboard-poll")
            tasks.create_task(self._keep_alive(), name="dashboard-keepalive")

    async def started(self, timeout_s: float = 10.0) -> None:
        """Wait (at most ``timeout_s``) for the first poll and the feed's first attempt."""
        waits: list[Awaitable[Any]] = [self.refresh()]
        if self.feed is not None:
            waits.append(self.feed.first_attempt.wait())
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*waits)
        except TimeoutError:
            log.warning("dashboard: still starting after %.0f s; serving anyway", timeout_s)

    async def close(self) -> None:
        """End the streams and release the pool and the InfluxDB client."""
        self.hub.close()
        await asyncio.to_thread(self.pool.close)
        await asyncio.to_thread(self._client.close)

    async def _keep_alive(self) -> None:
        # One timer for every stream, rather than one per stream and frame.
        while True:
            await asyncio.sleep(self.options.keepalive_s)
            self.hub.keep_alive()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.options.poll_s)
            await self.refresh()

    # -- data -----------------------------------------------------------------------
    async def refresh(self) -> None:
        """Read fleet and active alarms from InfluxDB (off the loop); push what changed."""
        try:
            fleet_json, alarms = await self.pool.run(self._read_fleet_and_alarms)
        except SensorGateError as exc:
            log.warning("dashboard: %s", exc)
            return
        if self.board.apply_snapshot(alarms) or "alarms" not in self.hub.last:
            self.publish_alarms()
        if fleet_json != self._fleet_json:
            self._fleet_json = fleet_json
            self.hub.publish_json("fleet", f'{{"at":"{utc_iso()}","devices":{fleet_json}}}')

    def _read_fleet_and_alarms(self) -> tuple[str, list[dict[str, Any]]]:
        fleet = [d.as_json() for d in self.views.fleet()]
        alarms = [a.as_json() for a in self.views.active_alarms()]
        return json.dumps(fleet, separators=(",", ":")), alarms

    def publish_alarms(self) -> None:
        """Send the active list to every browser."""
        self.hub.publish("alarms", self.board.active())

    def _publish_feed(self, state: FeedState) -> None:
        self.feed_state = state
        self.hub.publish("feed", state.as_json())

    async def fleet_json(self) -> bytes:
        """``/api/fleet``: the devices with their latest values (read now)."""

        def read() -> bytes:
            devices = [d.as_json() for d in self.views.fleet()]
            return json.dumps({"at": utc_iso(), "devices": devices}).encode()

        return await self.pool.run(read)

    async def device_json(self, site: str, device: str, span: str) -> bytes:
        """``/api/device``: everything the device page shows, as JSON."""
        if span not in RANGES:
            raise ViewInputError(f"range must be one of {', '.join(RANGES)}; got {span!r}")
        return await self.pool.run(
            lambda: json.dumps(self._device_doc(site, device, span)).encode()
        )

    def _device_doc(self, site: str, device: str, span: str) -> dict[str, Any]:
        end = datetime.now(UTC)
        start = end - parse_duration(span)
        windows = self.settings.stream.windows
        status = self.views.device(site, device)
        interval, readings = self.views.readings(site, device, start=start, end=end)
        _, aggs = self.views.aggregates(site, device, start=start, end=end, windows=windows)
        alarms = self.views.alarm_history(
            AlarmFilter(site=site, device=device), start=start, end=end, limit=500
        )
        _, band = self.views.expected_band(site, device, start=start, end=end, windows=windows)
        return {
            "site": site,
            "device": device,
            "range": span,
            "start": utc_iso(start),
            "end": utc_iso(end),
            "interval": interval,
            "status": status.as_json() if status else None,
            "readings": [p.as_json() for p in readings],
            "aggregates": [p.as_json() for p in aggs],
            "band": [p.as_json() for p in band],
            "alarms": [a.as_json() for a in alarms],
        }

    async def acknowledge(self, body: dict[str, Any]) -> dict[str, Any]:
        """Publish the acknowledge command for one alarm; return the command sent."""
        if self.feed is None:
            raise StorageError("no MQTT connection: cannot send the acknowledge command")
        missing = [k for k in ("site", "device", "alarm_id") if k not in body]
        if missing:
            raise ViewInputError(f"missing {missing[0]!r}")
        fields = {k: body[k] for k in ("site", "device", "alarm_id")}
        if not all(isinstance(v, str) for v in fields.values()):
            raise ViewInputError("site, device and alarm_id must be strings")
        by = str(body.get("by") or "dashboard")[:128]
        message = ack_message(self.settings.topics, by=by, **fields)
        await self.feed.publish(message.topic, message.payload)
        return message.document

    def stats(self) -> dict[str, Any]:
        """Figures of the running dashboard (streams, drops, feed, pool, write lag)."""
        lag = sorted(self.hub.write_lag_s)

        def pct(q: float) -> float | None:
            return round(lag[min(len(lag) - 1, int(q * len(lag)))] * 1000, 2) if lag else None

        return {
            "streams": self.hub.streams,
            "dropped_streams": self.hub.dropped,
            "feed": self.feed_state.as_json(),
            "alarm_events": self.feed.events if self.feed else 0,
            "blocking_calls_in_flight": self.pool.in_flight,
            # From the hub taking a frame to its write to each stream's socket, over the
            # last 20,000 writes: the server's share of the fan-out.
            "write_lag_ms": {"n": len(lag), "p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
        }
