"""Load for a dashboard from another process: ``python -m tests.integration.dashboard_load``.

Holds ``--streams`` event streams and runs ``--browsers`` loops over the API for
``--seconds`` (token in ``$DASHBOARD_LOAD_TOKEN``); prints ``{"ready": true}`` once
every stream has its first frame, then one JSON line with what it saw. Run apart from
the dashboard under test so that its Python work does not compete for that process's
GIL (which would slow the loop under test for reasons of the test's own making).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import time
from typing import Any

import aiohttp

TOKEN_ENV = "DASHBOARD_LOAD_TOKEN"
_IDS = re.compile(r'"alarm_id":"([^"]+)"')
ROUTES = [
    "api/config",
    "api/fleet",
    "api/alarms",
    "api/stats",
    "api/device?site=plant&device=pump-1&range=6h",
    "api/device?site=plant&device=pump-1&range=1h",
]


async def _stream(
    session: aiohttp.ClientSession, url: str, seen: dict[str, Any], ready: asyncio.Event
) -> None:
    async with session.get(url + "api/events") as resp:
        event = ""
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                ready.set()
                seen["frames"] += 1
                if event == "alarms":
                    ids = _IDS.findall(line)
                    seen["ever"].update(ids)
                    seen["last"] = ids


async def _browse(
    session: aiohttp.ClientSession,
    url: str,
    until: float,
    counts: dict[int, int],
    pause_s: float,
) -> None:
    # Paced, not flat out: this exercises every code path of the server while leaving
    # the 2-core machine room, so that the loop under test is not simply preempted.
    while time.monotonic() < until:
        for route in ROUTES:
            async with session.get(url + route) as resp:
                await resp.read()
                counts[resp.status] = counts.get(resp.status, 0) + 1
            await asyncio.sleep(pause_s)
        for body in (b'{"site": "plant", "device": "pump-1", "alarm_id": "a"}', b"not json"):
            async with session.post(url + "api/ack", data=body) as resp:
                await resp.read()
                counts[resp.status] = counts.get(resp.status, 0) + 1
            await asyncio.sleep(pause_s)


async def run(
    url: str, token: str, streams: int, browsers: int, seconds: float, pause_s: float = 0.02
) -> dict[str, Any]:
    """Run the load; return what it saw."""
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    seen = [{"frames": 0, "ever": set(), "last": []} for _ in range(streams)]
    readies = [asyncio.Event() for _ in range(streams)]
    counts: dict[int, int] = {}
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        tasks = [
            asyncio.create_task(_stream(session, url, s, r))
            for s, r in zip(seen, readies, strict=True)
        ]
        async with asyncio.timeout(30):
            await asyncio.gather(*(r.wait() for r in readies))
        print(json.dumps({"ready": True}), flush=True)
        until = time.monotonic() + seconds
        await asyncio.gather(
            *(_browse(session, url, until, counts, pause_s) for _ in range(browsers))
        )
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "statuses": counts,
        "streams": [
            {"frames": s["frames"], "ever": sorted(s["ever"]), "last": s["last"]} for s in seen
        ],
    }


def main() -> None:
    """Parse arguments, run, print the result as one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--streams", type=int, default=5)
    parser.add_argument("--browsers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    token = os.environ[TOKEN_ENV]  # not argv: every user of the machine can read that
    result = asyncio.run(run(args.url, token, args.streams, args.browsers, args.seconds))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
