"""After the load: send what the outboxes kept, wait for InfluxDB, count per device.

Published comes from each agent's outbox (its next sequence number), stored, distinct
events, windowed and late from InfluxDB; :mod:`gateway.chaos.accounting` turns them
into lost, duplicates and late per device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contract.errors import SensorGateError
from edge.mqtt import MqttLink, MqttSettings
from gateway.bench.influxd import Influxd
from gateway.chaos.accounting import DeviceTally
from gateway.chaos.roles import DATABASE, PER_EVENT, WINDOW
from gateway.influx.layout import StorageLayout

__all__ = ["await_and_count", "deadletters", "drain_outbox"]

Progress = Callable[[str], None]


def drain_outbox(path: Path, port: int) -> int:
    """Send what an agent left in its outbox (QoS 1), deleting each event on its PUBACK.

    Raises :class:`~contract.errors.BrokerError` when the broker cannot be reached.
    """
    from edge.outbox import Outbox

    outbox = Outbox(path)
    try:
        items = outbox.peek(limit=1_000_000)
        if not items:
            return 0
        link = MqttLink(MqttSettings(host="127.0.0.1", port=port))
        link.start(fail_fast=True)
        try:
            tickets = [(item.id, link.publish(item.topic, item.payload, qos=1)) for item in items]
            for _id, ticket in tickets:
                ticket.wait(30)
            outbox.ack([i for i, ticket in tickets if ticket.is_acknowledged()])
        finally:
            link.stop()
        return len(items)
    finally:
        outbox.close()


def _outbox_figures(path: Path, device: str) -> tuple[int, int, int]:
    from edge.outbox import Outbox

    outbox = Outbox(path)
    try:
        return outbox.next_sequence(device), outbox.stats().dropped_total, outbox.depth
    finally:
        outbox.close()


def _query(influx: Influxd, q: str) -> list[dict[str, Any]]:
    doc = influx._get("/query", db=DATABASE, q=q).json()
    result = (doc.get("results") or [{}])[0]
    if "error" in result:
        raise SensorGateError(f"influxd refused {q!r}: {result['error']}")
    return list(result.get("series") or [])


def _by_device(influx: Influxd, q: str) -> dict[str, int]:
    return {
        s["tags"]["device"]: int(s["values"][0][1] or 0)
        for s in _query(influx, q + ' GROUP BY "device"')
    }


class _Counts:
    """The queries of the count, on one database and layout."""

    def __init__(self, influx: Influxd, layout: StorageLayout) -> None:
        self.influx = influx
        self.raw, self.late_src, self.agg_src = (
            layout.readings,
            layout.late_readings,
            layout.aggregates,
        )

    def stored(self) -> dict[str, int]:
        return _by_device(self.influx, f'SELECT count("value") FROM {self.raw}')

    def distinct(self) -> dict[str, int]:
        return _by_device(self.influx, f'SELECT count(distinct("seq")) FROM {self.raw}')

    def windowed(self) -> dict[str, int]:
        where = f"\"window\" = '{WINDOW}'"
        return _by_device(self.influx, f'SELECT sum("count") FROM {self.agg_src} WHERE {where}')

    def late(self) -> dict[str, int]:
        return _by_device(self.influx, f'SELECT count("value") FROM {self.late_src}')

    def total_stored(self) -> int:
        try:
            return sum(self.stored().values())
        except SensorGateError:
            return -1

    def total_folded(self) -> int:
        try:
            return sum(self.windowed().values()) + sum(self.late().values())
        except SensorGateError:
            return -1

    def last_event_readings(self, device: str, seq: int) -> int | None:
        last = _query(
            self.influx,
            f'SELECT count("value") FROM {self.raw} WHERE "device" = \'{device}\''
            f' AND "seq" = {seq}',
        )
        return int(last[0]["values"][0][1]) if last else None


def await_and_count(
    influx: Influxd,
    layout: StorageLayout,
    workdir: Path,
    devices: int,
    drain_timeout_s: float,
    progress: Progress,
) -> tuple[list[DeviceTally], float | None]:
    """Wait for the stored readings and the windows; return the tallies and a moment.

    The moment (monotonic) is when InfluxDB held every published reading (None: never).
    """
    names = [f"dev-{i}" for i in range(devices)]
    outbox = {d: _outbox_figures(workdir / f"outbox-{i}.db", d) for i, d in enumerate(names)}
    want = sum(PER_EVENT * (events - 1) for events, _d, _p in outbox.values())
    counts = _Counts(influx, layout)
    progress(f"waiting until InfluxDB holds the {want:,}+ published readings")
    got = _settle(
        counts.total_stored, lambda n: n >= want, drain_timeout_s, 60.0, progress, "stored"
    )
    stored_at = time.monotonic() if got >= want else None
    progress("waiting until every window has closed")
    _settle(
        counts.total_folded,
        lambda n: n >= counts.total_stored(),
        300.0,
        45.0,
        progress,
        "in windows or late",
    )
    stored, distinct = counts.stored(), counts.distinct()
    windowed, late = counts.windowed(), counts.late()
    tallies = [
        DeviceTally(
            device=d,
            events=outbox[d][0],
            dropped=outbox[d][1],
            pending=outbox[d][2],
            last_event_readings=counts.last_event_readings(d, outbox[d][0] - 1),
            stored=stored.get(d, 0),
            stored_events=distinct.get(d, 0),
            windowed=windowed.get(d, 0),
            late=late.get(d, 0),
            readings_per_event=PER_EVENT,
        )
        for d in names
    ]
    return tallies, stored_at


def _settle(
    read: Callable[[], int],
    done: Callable[[int], bool],
    timeout_s: float,
    still_s: float,
    progress: Progress,
    what: str,
) -> int:
    """Poll ``read`` every 2 s until ``done``, ``still_s`` without change, or the timeout."""
    deadline = time.monotonic() + timeout_s
    last, changed, printed = -2, time.monotonic(), 0.0
    while True:
        value = read()
        if value >= 0 and done(value):
            return value
        now = time.monotonic()
        if value != last:
            last, changed = value, now
        if now - printed > 15:
            printed = now
            progress(f"{what}: {value:,}")
        if now - changed > still_s or now > deadline:
            return value
        time.sleep(2.0)


def deadletters(influx: Influxd, layout: StorageLayout) -> dict[str, int]:
    """Return the dead letters InfluxDB holds, by reason."""
    series = _query(influx, f'SELECT count("error") FROM {layout.deadletters} GROUP BY "reason"')
    return {s["tags"]["reason"]: int(s["values"][0][1]) for s in series}
