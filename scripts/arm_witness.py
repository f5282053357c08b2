"""The host's witness in ``make edge-arm-check``: a subscriber, its verdict, the table.

:class:`Subscriber` receives every telemetry and status message of the agent under
test; :func:`analyse` judges them and :func:`table` formats the runs (both pure, tested
in ``tests/edge/test_edge_arm_check.py``). The check itself is
``scripts/edge_arm_check.py``.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["CPU_NOTE", "Subscriber", "analyse", "table"]

CPU_NOTE = (
    "CPU is qemu's time on this x86 host (translation included), not a Raspberry Pi's CPU;"
    " RSS includes qemu's own memory"
)


class Subscriber:
    """The host's witness: every telemetry and status message of one device, in order."""

    def __init__(self, port: int, site: str, device: str) -> None:
        from edge.mqtt import MqttLink, MqttSettings

        self._lock = threading.Lock()
        self._raw: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        topics = [f"sg/v1/{site}/{device}/{kind}" for kind in ("telemetry", "status")]
        self.link = MqttLink(
            MqttSettings(host="127.0.0.1", port=port),
            on_connect=lambda link: link.subscribe(topics, qos=1),
            on_subscribed=lambda _filters: self.subscribed.set(),
            on_message=self._on_message,
        )
        self.link.start(fail_fast=True)

    def _on_message(self, msg: Any) -> None:
        from edge.mqtt import message_topic

        with self._lock:  # only hand over: decoding happens off the paho thread
            self._raw.append((message_topic(msg), bytes(msg.payload)))

    def decoded(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Return (telemetry events, status events) received so far, in arrival order."""
        with self._lock:
            raw = list(self._raw)
        telemetry, statuses = [], []
        for topic, payload in raw:
            if not payload:
                continue
            doc = json.loads(payload)
            (telemetry if topic.endswith("/telemetry") else statuses).append(doc)
        return telemetry, statuses

    def reasons(self) -> list[str]:
        """Return the ``reason`` of every status so far (birth, heartbeat, shutdown, ...)."""
        return [s["data"].get("reason") for s in self.decoded()[1]]

    def close(self) -> None:
        """Disconnect."""
        self.link.stop()


def analyse(
    telemetry: list[dict[str, Any]],
    statuses: list[dict[str, Any]],
    *,
    seconds: float,
    expected_per_s: float,
) -> dict[str, Any]:
    """Judge what the host subscriber received, in arrival order.

    ``telemetry`` are decoded telemetry events, ``statuses`` decoded status events.
    Fails on: nothing delivered, a sequence out of order, a gap, a fault reading, a
    series whose reading times go backwards, fewer readings than the agent's last
    report said it stored, or no clean goodbye.
    """
    seq = _sequences(telemetry)
    readings = [r for e in telemetry for r in e["data"]["readings"]]
    faults = [r for r in readings if r.get("fault")]
    series, backwards = _series_backwards(readings)
    stored, missed = _agent_report(statuses)
    reasons = [s["data"].get("reason") for s in statuses]
    problems = []
    if not telemetry:
        problems.append("no telemetry arrived at the host subscriber")
    if seq["gaps"]:
        problems.append(f"sequence gaps: {seq['gaps']}")
    if seq["out_of_order"]:
        problems.append(f"{seq['out_of_order']} telemetry events arrived out of sequence order")
    if faults:
        problems.append(f"{len(faults)} fault readings, first: {faults[0].get('fault')!r}")
    if backwards:
        problems.append(f"{backwards} readings older than the previous one of their series")
    if stored is not None and len(readings) < stored:
        problems.append(f"{len(readings)} readings delivered, the agent reported {stored} stored")
    if "birth" not in reasons:
        problems.append("no birth status from the agent")
    if "shutdown" not in reasons:
        problems.append("no goodbye (shutdown) status: the agent did not stop cleanly")
    return {
        "events": len(telemetry),
        "readings": len(readings),
        "readings_expected_at_least": round(seconds * expected_per_s),
        "readings_per_s": round(len(readings) / seconds, 2) if seconds else None,
        **seq,
        "faults": len(faults),
        "series": series,
        "series_backwards": backwards,
        "agent_readings_stored": stored,
        "agent_missed_ticks": missed,
        "status_reasons": sorted({r for r in reasons if r}),
        "problems": problems,
        "pass": not problems,
    }


def _sequences(telemetry: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the first and last sequence, the gaps, and how many came out of order or twice."""
    seqs = [int(e["data"]["sequence"]) for e in telemetry]
    unique = sorted(set(seqs))
    return {
        "first_sequence": unique[0] if unique else None,
        "last_sequence": unique[-1] if unique else None,
        # inclusive ranges of missing sequences
        "gaps": [[a + 1, b - 1] for a, b in itertools.pairwise(unique) if b - a > 1],
        "out_of_order": sum(1 for a, b in itertools.pairwise(seqs) if b <= a),
        "duplicates": len(seqs) - len(unique),
    }


def _series_backwards(readings: list[dict[str, Any]]) -> tuple[int, int]:
    """Return how many series there are, and how many readings went back in time."""
    last_time: dict[tuple[str, str], str] = {}
    backwards = 0
    for r in readings:
        key = (r["sensor"], r["metric"])
        if key in last_time and r["time"] <= last_time[key]:
            backwards += 1
        last_time[key] = r["time"]
    return len(last_time), backwards


def _agent_report(statuses: list[dict[str, Any]]) -> tuple[int | None, int | None]:
    """Return the readings the agent last said it stored, and its missed ticks."""
    details = [s["data"].get("details") or {} for s in statuses]
    reports = [d for d in details if "readings_stored" in d]
    stored = max((d["readings_stored"] for d in reports), default=None)
    missed = None
    if reports:
        missed = sum(s.get("missed_ticks", 0) for s in reports[-1].get("sensors", {}).values())
    return stored, missed


def table(doc: dict[str, Any]) -> str:
    """Format the human summary: one column per run (arch, or the native baseline)."""
    runs = doc["runs"]
    rows: list[tuple[str, ...]] = [("", *[r["arch"] for r in runs])]

    def row(label: str, fn: Callable[[dict[str, Any]], Any]) -> None:
        cells = []
        for r in runs:
            try:
                value = fn(r)
            except (KeyError, TypeError):
                value = None
            cells.append("-" if value is None else str(value))
        rows.append((label, *cells))

    row("stands for", lambda r: r["stands_for"])
    row("python / machine", lambda r: f"{r['python']} {r['machine']}")
    row("pydantic-core wheel", lambda r: r["pydantic_core_wheel"])
    row("rootfs", lambda r: _rootfs(r))
    row("install.sh", lambda r: f"{r['install_s']:g} s")
    row("whole check", lambda r: f"{r['wall_s']:g} s")
    row("start to birth", lambda r: f"{r['startup_s']:g} s")
    row("measured", lambda r: f"{r['measured_s']:g} s")
    row("RSS max / mean", lambda r: f"{r['rss_mb_max']:g} / {r['rss_mb_mean']:g} MB")
    row("CPU", lambda r: f"{r['cpu_percent_of_one_core']:g} % of one core")
    row("readings delivered", lambda r: f"{r['check']['readings']} ({r['check']['events']} events)")
    row("sequences", lambda r: f"{r['check']['first_sequence']}..{r['check']['last_sequence']}")
    row(
        "gaps / out of order", lambda r: f"{len(r['check']['gaps'])} / {r['check']['out_of_order']}"
    )
    row("duplicates / faults", lambda r: f"{r['check']['duplicates']} / {r['check']['faults']}")
    row("missed ticks", lambda r: r["check"]["agent_missed_ticks"])
    row("verdict", lambda r: "PASS" if r["pass"] else "FAIL")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append("")
    lines.append(f"note: {CPU_NOTE}.")
    for r in runs:
        for problem in r.get("problems", []):
            lines.append(f"{r['arch']}: FAIL: {problem}")
    lines.append("overall: " + ("PASS" if doc["pass"] else "FAIL"))
    return "\n".join(lines)


def _rootfs(r: dict[str, Any]) -> str:
    if r.get("rootfs_build_s") is None:
        return "cached" if r.get("rootfs") else "-"
    return f"built in {r['rootfs_build_s']:g} s"
