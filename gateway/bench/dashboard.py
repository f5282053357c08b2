"""Measure the dashboard with a large fleet: ``python -m gateway.bench.dashboard``.

Starts mosquitto and influxd, stores the last readings of ``--devices`` devices (two
metrics each, a reading every 10 s over 10 minutes) and ``--alarms`` active alarms,
serves the dashboard, opens it in headless Chromium (Playwright) and prints, as JSON:

- the API: ``/api/fleet`` and ``/api/alarms`` response time and size;
- the page: DOMContentLoaded, load, and first render with the whole fleet;
- live updates: from publishing an alarm event on MQTT to its row being in the page
  (``--updates`` times), and the browser's parse+render time of each SSE update.

Needs Debian's ``chromium`` and the ``playwright`` package (``dev`` extra).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from contract.alarms import AlarmRaisedEvent, encode_alarm
from edge.mqtt import MqttLink, MqttSettings
from gateway.bench.render import write_report
from gateway.dashboard.server import Dashboard
from gateway.influx.layout import StorageLayout
from gateway.influx.lineprotocol import escape_tag, field_string, to_ns
from gateway.influx.rejections import measurement_of
from gateway.influx.setup import setup_influx
from gateway.localstack.services import LocalServices
from gateway.settings import GatewaySettings, InfluxSettings, load_settings

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _seed(influx: InfluxSettings, devices: int, alarms: int) -> None:
    now = datetime.now(UTC)
    lines = []
    for d in range(devices):
        site, dev = f"site-{d % 10}", f"dev-{d:04d}"
        for k in range(60):
            ns = to_ns(now - timedelta(seconds=10 * k + 1))
            for metric, value in (("temperature", 20 + d % 7 + k % 3), ("humidity", 40 + d % 11)):
                lines.append(
                    f"readings,device={dev},metric={metric},sensor=env,site={site}"
                    f" value={float(value)!r},seq={k}i {ns}"
                )
    for a in range(alarms):
        d = a * max(1, devices // max(1, alarms))
        site, dev = f"site-{d % 10}", f"dev-{d:04d}"
        sev = ("critical", "major", "minor", "warning")[a % 4]
        lines.append(
            f"alarms,device={dev},metric=temperature,rule=hot,sensor=env,severity={sev},"
            f"site={site},state=active alarm_id={field_string(f'bench-{a}')},value=99.0,"
            f"threshold=40.0,message={field_string('too hot ' + escape_tag(dev))}"
            f" {to_ns(now - timedelta(seconds=a))}"
        )
    # As the gateway stores them: database and retention policies made as at its start,
    # each line in its measurement's policy (the dashboard reads them there).
    report = setup_influx(influx)
    if not report.ok:
        raise RuntimeError(report.to_text())
    layout = StorageLayout.of(influx)
    by_policy: dict[str | None, list[str]] = {}
    for line in lines:
        by_policy.setdefault(layout.policy(measurement_of(line)), []).append(line)
    with httpx.Client(base_url=influx.url, timeout=60) as http:
        for policy, batch in by_policy.items():
            params = {"db": influx.database} | ({} if policy is None else {"rp": policy})
            for i in range(0, len(batch), 5000):
                r = http.post("/write", params=params, content="\n".join(batch[i : i + 5000]))
                r.raise_for_status()


def _feed(influx: InfluxSettings, devices: int, stop: threading.Event) -> None:
    params = {"db": influx.database}
    raw = StorageLayout.of(influx).policy("readings")
    if raw is not None:
        params["rp"] = raw
    with httpx.Client(base_url=influx.url, timeout=60) as http:
        k = 0
        while not stop.wait(2.0):
            ns = to_ns(datetime.now(UTC))
            k += 1
            body = "\n".join(
                f"readings,device=dev-{d:04d},metric=temperature,sensor=env,site=site-{d % 10}"
                f" value={20.0 + (d + k) % 5!r},seq={1000 + k}i {ns}"
                for d in range(devices)
            )
            http.post("/write", params=params, content=body)


def _timed_get(url: str, token: str, n: int = 10) -> dict[str, Any]:
    times, size = [], 0
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
        for _ in range(n):
            t = time.perf_counter()
            r = http.get(url)
            times.append((time.perf_counter() - t) * 1000)
            size = len(r.content)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1),
            "bytes": size}  # fmt: skip


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def run(devices: int, alarms: int, updates: int, out: Path | None) -> dict[str, Any]:
    """Run the measurement; return the figures."""
    from playwright.sync_api import sync_playwright

    with LocalServices() as local:
        ep = local.endpoints
        settings = load_settings(
            mqtt={"host": ep.mqtt_host, "port": ep.mqtt_port},
            influx={"url": ep.influx_url, "database": "bench"},
        )
        _seed(settings.influx, devices, alarms)
        with (
            Dashboard(settings, port=0, token="bench", poll_s=2.0) as dash,
            MqttLink(MqttSettings(host=ep.mqtt_host, port=ep.mqtt_port)) as link,
            sync_playwright() as pw,
        ):
            figures: dict[str, Any] = {"devices": devices, "active_alarms": alarms}
            figures["api_fleet"] = _timed_get(dash.url + "api/fleet", "bench")
            figures["api_alarms"] = _timed_get(dash.url + "api/alarms", "bench")
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            # The page's CSP forbids eval; the measuring predicates below are strings that
            # Playwright evaluates, so this page (a probe, not a user's) bypasses it.
            page = browser.new_page(viewport={"width": 1360, "height": 900}, bypass_csp=True)
            figures["page_loads"] = [_page_load(page, dash.url_with_token, devices, alarms)
                                     for _ in range(3)]  # fmt: skip
            figures.update(_live_updates(page, link, settings, devices, updates))
            browser.close()
    if out is not None:
        write_report(out, json.dumps(figures, indent=2))
    return figures


def _page_load(page: Page, url: str, devices: int, alarms: int) -> dict[str, float]:
    """Load the page until every device and alarm row is in it; return its timings."""
    t = time.perf_counter()
    page.goto(url)
    page.wait_for_function(
        f"document.querySelectorAll('[data-testid=device]').length >= {devices}"
        f" && document.querySelectorAll('[data-testid=alarm]').length >= {alarms}",
        timeout=60_000,
    )
    wall = (time.perf_counter() - t) * 1000
    nav = page.evaluate(
        "(() => { const n = performance.getEntriesByType('navigation')[0];"
        " return {dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd}; })()"
    )
    first = page.evaluate("window.sgStats.firstRender")
    return {"dom_content_loaded_ms": round(nav["dcl"], 1),
            "load_ms": round(nav["load"], 1),
            "first_full_render_ms": round(first, 1),
            "wall_until_all_rows_ms": round(wall, 1)}  # fmt: skip


def _live_updates(
    page: Page, link: MqttLink, settings: GatewaySettings, devices: int, updates: int
) -> dict[str, Any]:
    """Time ``updates`` alarm events from MQTT to their row, the fleet reporting meanwhile."""
    page.evaluate(
        "window.sgSeen = {}; new MutationObserver(() => {"
        " for (const r of document.querySelectorAll('[data-testid=alarm]')) {"
        "  const id = r.dataset.alarmId; if (!(id in window.sgSeen))"
        "   window.sgSeen[id] = Date.now(); } })"
        ".observe(document.getElementById('app'), {childList: true, subtree: true});"
    )
    # The fleet keeps reporting meanwhile: every device a new reading every 2 s.
    stop = threading.Event()
    feeder = threading.Thread(target=_feed, args=(settings.influx, devices, stop), daemon=True)
    feeder.start()
    latencies = []
    for i in range(updates):
        alarm_id = f"live-{i}"
        now = datetime.now(UTC)
        event = AlarmRaisedEvent.create(
            alarm_id=alarm_id, site="site-1", device=f"dev-{i:04d}", sensor="env",
            metric="temperature", rule="live", severity="critical", state="active",
            value=99.0, threshold=40.0, message="live", event_time=now, raised_at=now,
        )  # fmt: skip
        sent = time.time() * 1000
        link.publish(settings.topics.alarms("site-1", f"dev-{i:04d}"), encode_alarm(event))
        page.wait_for_function(f"'{alarm_id}' in window.sgSeen", timeout=10_000)
        latencies.append(page.evaluate(f"window.sgSeen['{alarm_id}']") - sent)
    time.sleep(6)  # let a few fleet updates arrive, then read the page's figures
    stop.set()
    feeder.join(10)
    stats = page.evaluate("window.sgStats.updates")
    renders = {
        kind: [u["parse_render_ms"] for u in stats if u["kind"] == kind]
        for kind in ("alarms", "fleet")
    }
    return {
        "alarm_event_to_row_ms": {
            "n": len(latencies), "p50": _pct(latencies, 0.5), "p95": _pct(latencies, 0.95),
            "max": round(max(latencies), 1),
        },
        "sse_update_parse_render_ms": {
            kind: {"n": len(v), "p50": _pct(v, 0.5), "max": round(max(v), 1)}
            for kind, v in renders.items()
            if v
        },
    }  # fmt: skip


def main() -> None:
    """Parse arguments, run, print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--alarms", type=int, default=100)
    parser.add_argument("--updates", type=int, default=20, help="live alarm events to time")
    parser.add_argument("--out", type=Path, default=Path("reports/dashboard-bench.json"))
    args = parser.parse_args()
    print(json.dumps(run(args.devices, args.alarms, args.updates, args.out), indent=2))


if __name__ == "__main__":
    main()
