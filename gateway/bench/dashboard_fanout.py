"""``sensorgate bench-dashboard``: many live browsers on one dashboard process.

Per round, on fresh mosquitto and influxd (:class:`~gateway.localstack.services.LocalServices`):

1. ``sensorgate dashboard`` runs as its own process (token from the environment);
2. ``--clients`` event streams (``/api/events``, with the session cookie's token in
   the header) are opened from this process and held;
3. ``--alarms`` times: an ``alarm.raised`` event is published on MQTT (QoS 1) and the
   time from just before the publish to its ``alarms`` frame on *each* stream is
   recorded; the alarm is cleared once every stream has it (or after 5 s), then the
   next one follows after ``--interval``;
4. the server's RSS (psutil) idle, with the streams open and at the end, and its CPU
   over the publishing phase and over 5 s of the streams held idle.

Reported: per delivery (alarm x stream) p50/p99/max, per alarm the time until the last
stream has it, deliveries missed, streams the server dropped, and the server's own
share (``/api/stats`` ``write_lag_ms``: from its hub taking a frame to the write on each
stream's socket). The clients are bare sockets on one event loop in this process
(bytes scanned as they arrive), so the end-to-end figures include their own reading
time and the broker's: an upper bound of what a browser sees.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psutil

__all__ = ["main_from_args", "run_round"]

_ID = re.compile(rb'"alarm_id":"(fan-\d+)"')
SEE_TIMEOUT_S = 5.0


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": _pct(values, 0.50),
        "p99": _pct(values, 0.99),
        "max": round(max(values), 2) if values else None,
    }


class _Stream(asyncio.Protocol):
    """One event stream on a bare socket: when it first saw each alarm id.

    A protocol, not an HTTP client: bytes are scanned in ``data_received`` as they
    arrive, with no task switch per read, so the figure is the server's and not this
    client's (200 streams share one loop here, where each browser has its own).
    """

    def __init__(self, request: bytes) -> None:
        self._request = request
        self._tail = b""
        self.seen: dict[str, float] = {}
        self.ready = asyncio.Event()
        self.closed = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        scanned = self._tail + data
        for alarm_id in _ID.findall(scanned):
            self.seen.setdefault(alarm_id.decode(), now)
        self._tail = scanned[-48:]  # an id cut between two reads
        if not self.ready.is_set() and b"data: " in scanned:
            self.ready.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


async def _measure(
    url: str,
    token: str,
    settings: Any,
    pid: int,
    *,
    clients: int,
    alarms: int,
    interval_s: float,
) -> dict[str, Any]:
    import aiohttp
    import psutil

    server = psutil.Process(pid)
    figures: dict[str, Any] = {"rss_mb_idle": _rss_mb(server)}
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        streams = await _open_streams(url, token, clients)
        async with session.get(url + "api/stats", headers=headers) as resp:
            figures["streams_open"] = (await resp.json())["streams"]
        figures["rss_mb_streams_open"] = _rss_mb(server)
        clock = _CpuClock(server)
        await asyncio.sleep(5.0)
        figures["cpu_cores_streams_idle"] = clock.cores()
        clock = _CpuClock(server)
        deliveries, all_reached, missed = await _publish_alarms(
            settings, streams, alarms, interval_s
        )
        figures["cpu_cores_publishing"] = clock.cores()
        figures["rss_mb_end"] = _rss_mb(server)
        async with session.get(url + "api/stats", headers=headers) as resp:
            stats = await resp.json()
        for stream in streams:
            if stream.transport is not None:
                stream.transport.close()
    figures.update(
        delivery_ms=_summary(deliveries),
        all_streams_ms=_summary(all_reached),
        server_write_lag_ms=stats["write_lag_ms"],
        missed_deliveries=missed,
        dropped_streams=stats["dropped_streams"],
    )
    return figures


def _rss_mb(server: psutil.Process) -> float:
    return round(server.memory_info().rss / (1024 * 1024), 1)


class _CpuClock:
    """The server's CPU, in cores, from its creation to :meth:`cores`."""

    def __init__(self, server: psutil.Process) -> None:
        self.server = server
        self.cpu0, self.wall0 = server.cpu_times(), time.perf_counter()

    def cores(self) -> float:
        cpu1, wall1 = self.server.cpu_times(), time.perf_counter()
        used = cpu1.user + cpu1.system - self.cpu0.user - self.cpu0.system
        return round(used / (wall1 - self.wall0), 4)


async def _open_streams(url: str, token: str, clients: int) -> list[_Stream]:
    """Open ``clients`` event streams and wait until each has its first frame."""
    host, port = url.split("//", 1)[1].strip("/").rsplit(":", 1)
    request = (
        f"GET /api/events HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    streams = [_Stream(request) for _ in range(clients)]
    for stream in streams:
        await loop.create_connection(_factory(stream), host, int(port))
    async with asyncio.timeout(60):
        await asyncio.gather(*(c.ready.wait() for c in streams))
    return streams


def _factory(stream: _Stream) -> Callable[[], _Stream]:
    return lambda: stream


async def _publish_alarms(
    settings: Any, streams: list[_Stream], alarms: int, interval_s: float
) -> tuple[list[float], list[float], int]:
    """Raise and clear ``alarms`` alarms on MQTT, one at a time; time each on every stream.

    Returns the delivery times (ms, per alarm and stream), the time until every stream
    had each alarm (ms, the alarms all reached) and the deliveries missed.
    """
    from contract.alarms import AlarmClearedEvent, AlarmRaisedEvent, encode_alarm
    from gateway.connectors.aio_mqtt import connect

    mqtt = settings.mqtt.link_settings(f"sg-fanout-{secrets.token_hex(3)}")
    deliveries: list[float] = []
    all_reached: list[float] = []
    missed = 0
    async with connect(mqtt, client_id=mqtt.client_id) as link:
        topic = settings.topics.alarms("bench", "fan-device")
        for i in range(alarms):
            alarm_id = f"fan-{i}"
            now = datetime.now(UTC)
            common: dict[str, Any] = {
                "alarm_id": alarm_id, "site": "bench", "device": "fan-device",
                "sensor": "env", "metric": "temperature", "rule": "fanout",
                "severity": "critical", "value": 99.0, "threshold": 40.0,
                "message": "fan-out bench", "raised_at": now,
            }  # fmt: skip
            raised = AlarmRaisedEvent.create(state="active", event_time=now, **common)
            sent = time.perf_counter()
            await link.publish(topic, encode_alarm(raised), qos=1)
            got = await _seen_by(streams, alarm_id, sent)
            missed += len(streams) - len(got)
            deliveries.extend(ms * 1000 for ms in got)
            if len(got) == len(streams):
                all_reached.append(max(got) * 1000)
            cleared = AlarmClearedEvent.create(
                state="cleared", event_time=datetime.now(UTC), **common
            )
            await link.publish(topic, encode_alarm(cleared), qos=1)
            await asyncio.sleep(interval_s)
    return deliveries, all_reached, missed


async def _seen_by(streams: list[_Stream], alarm_id: str, sent: float) -> list[float]:
    """Wait until every stream saw ``alarm_id`` (at most ``SEE_TIMEOUT_S``); their delays."""
    deadline = sent + SEE_TIMEOUT_S
    while time.perf_counter() < deadline:
        if all(alarm_id in c.seen for c in streams):
            break
        await asyncio.sleep(0.002)
    return [c.seen[alarm_id] - sent for c in streams if alarm_id in c.seen]


def run_round(*, clients: int, alarms: int, interval_s: float) -> dict[str, Any]:
    """Run one round on fresh services; return its figures."""
    from gateway.localstack.services import LocalServices
    from gateway.settings import load_settings, settings_env

    with LocalServices() as local:
        ep = local.endpoints
        prefix = f"fanout/{secrets.token_hex(3)}"
        settings = load_settings(
            mqtt={"host": ep.mqtt_host, "port": ep.mqtt_port},
            influx={"url": ep.influx_url, "database": "fanout"},
            topic_prefix=prefix,
        )
        token = secrets.token_urlsafe(24)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORGATE_")}
        env.update(settings_env(settings))
        env.pop("SENSORGATE_DASHBOARD__TOKEN_FILE", None)
        env["SENSORGATE_DASHBOARD__TOKEN"] = token
        env["SENSORGATE_DASHBOARD__PORT"] = "0"
        env["SENSORGATE_DASHBOARD__MAX_STREAMS"] = str(max(1000, clients + 10))
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "--log-level", "WARNING", "dashboard"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            if not first.startswith("SensorGate dashboard: "):
                raise RuntimeError(f"the dashboard did not start: {first!r}")
            url = first.split(": ", 1)[1].strip()
            return asyncio.run(
                _measure(
                    url,
                    token,
                    settings,
                    proc.pid,
                    clients=clients,
                    alarms=alarms,
                    interval_s=interval_s,
                )
            )
        finally:
            proc.terminate()
            proc.wait(30)
            if proc.stdout is not None:
                proc.stdout.close()


def _table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(
        title=f"dashboard fan-out: {report['clients']} event streams, {report['alarms']} alarms"
    )
    for col in ("round", "delivery p50/p99/max ms", "all streams p50/p99/max ms",
                "server write lag p50/p99 ms", "missed", "dropped", "CPU publishing", "CPU idle",
                "RSS idle/open/end MB"):  # fmt: skip
        table.add_column(col, justify="right")
    for i, r in enumerate(report["rounds"], 1):
        d, a, w = r["delivery_ms"], r["all_streams_ms"], r["server_write_lag_ms"]
        table.add_row(
            str(i),
            f"{d['p50']} / {d['p99']} / {d['max']}",
            f"{a['p50']} / {a['p99']} / {a['max']}",
            f"{w['p50']} / {w['p99']}",
            str(r["missed_deliveries"]),
            str(r["dropped_streams"]),
            f"{r['cpu_cores_publishing']:.1%}",
            f"{r['cpu_cores_streams_idle']:.1%}",
            f"{r['rss_mb_idle']} / {r['rss_mb_streams_open']} / {r['rss_mb_end']}",
        )
    return table


def main_from_args(args: argparse.Namespace) -> int:
    """Run ``sensorgate bench-dashboard``; print a table or JSON; 0, or 1 if p99 > 200 ms."""
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        # The load average says whether other work shared the machine meanwhile.
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_1m_before": round(os.getloadavg()[0], 2),
        },
        "clients": args.clients,
        "alarms": args.alarms,
        "interval_s": args.interval,
        "target": "an alarm reaches every stream within p99 200 ms",
        "rounds": [
            run_round(clients=args.clients, alarms=args.alarms, interval_s=args.interval)
            for _ in range(args.rounds)
        ],
    }
    report["machine"]["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    met = all(
        r["missed_deliveries"] == 0 and (r["delivery_ms"]["p99"] or 1e9) <= 200
        for r in report["rounds"]
    )
    report["target_met"] = met
    if args.out is not None:
        from gateway.bench.render import write_report

        write_report(args.out, json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        from rich.console import Console

        console = Console(highlight=False)
        console.print(_table(report))
        console.print(f"target ({report['target']}): {'met' if met else 'NOT met'}")
    return 0 if met else 1
