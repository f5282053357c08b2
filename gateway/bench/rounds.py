"""What every round of every benchmark does alike.

Fresh mosquitto and influxd (database ``bench``) per round; a failure recorded in the
round's result instead of raised; the longest wait for a burst; and the burst itself:
snapshot the counters, release the publisher, watch influxd until the points settle,
then wait for the publisher's own report. Used by ``bench``, ``bench-adapters``,
``bench-stop`` and ``bench-cluster``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import psutil

from contract.errors import SensorGateError
from gateway.bench.influxd import Influxd
from gateway.bench.measure import (
    Completion,
    ProcessTree,
    Snapshot,
    take_snapshot,
    watch_until_stored,
)
from gateway.bench.peers import child_env
from gateway.bench.publisher import PublisherProcess
from gateway.bench.results import RoundResult
from gateway.bench.workload import Workload
from gateway.localstack.services import LocalServices, ServiceEndpoints

__all__ = [
    "DATABASE",
    "BurstLimits",
    "Progress",
    "burst_until_stored",
    "default_timeout_s",
    "fresh_services",
    "now_utc",
    "recorded_failure",
    "release_and_watch",
    "round_line",
    "start_publisher",
]

DATABASE = "bench"
Progress = Callable[[str], None]


class BurstLimits(Protocol):
    """How long a burst may take to settle and at most."""

    @property
    def settle_s(self) -> float:
        """The burst is stored once influxd's write count is still this long."""
        ...

    @property
    def burst_timeout_s(self) -> float:
        """The longest wait for the burst."""
        ...


class _Outcome(Protocol):
    error: str | None
    outcome: str


def now_utc() -> str:
    """Return the time now, UTC, to the second (``2026-01-31T12:00:00Z``)."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def round_line(r: RoundResult, cpu: list[str]) -> str:
    """Return one line on a round: stored, rate, the ``cpu`` parts, how it ended, losses."""
    if r.error:
        return f"FAILED: {r.error.splitlines()[0]}"
    parts = [f"stored {r.stored:,}/{r.expected:,}" if r.stored is not None else "not counted"]
    if r.readings_per_s:
        parts.append(f"{r.readings_per_s:,.0f} readings/s end to end")
    parts += cpu
    if r.outcome != "settled":
        parts.append(f"({r.outcome})")
    if r.lost:
        parts.append(f"LOST {r.lost:,}")
    return ", ".join(parts)


def default_timeout_s(total: int) -> float:
    """Return the default longest wait for a burst of ``total`` readings."""
    return 120.0 + total / 2_000


@contextmanager
def fresh_services() -> Iterator[tuple[LocalServices, Influxd]]:
    """Start fresh mosquitto and influxd with the ``bench`` database; stop them after."""
    with LocalServices() as local, Influxd(local.endpoints.influx_url, DATABASE) as influxd:
        influxd.create_database()
        assert local.influxd is not None
        assert local.mosquitto is not None
        yield local, influxd


@contextmanager
def recorded_failure(result: _Outcome) -> Iterator[None]:
    """Record a service or process failure in ``result`` (outcome ``failed``), not raise it."""
    try:
        yield
    except (SensorGateError, psutil.Error) as exc:
        result.error = str(exc) or type(exc).__name__
        result.outcome = "failed"


def start_publisher(
    workload: Workload, endpoints: ServiceEndpoints, workdir: Path, dialect: str = "native"
) -> PublisherProcess:
    """Start the burst publisher for ``workload`` on the round's broker (log in ``workdir``)."""
    return PublisherProcess(
        workload,
        host=endpoints.mqtt_host,
        port=endpoints.mqtt_port,
        log_path=workdir / "publisher.log",
        env=child_env(),
        dialect=dialect,
    )


def release_and_watch(
    influxd: Influxd,
    influxd_tree: ProcessTree,
    peer_tree: ProcessTree,
    claimed: Callable[[], float | None] | None,
    publisher: PublisherProcess,
    *,
    expected: int,
    limits: BurstLimits,
    tag: str = "",
    progress: Progress | None = None,
) -> tuple[Snapshot, Completion]:
    """Snapshot, release the publisher's burst, watch influxd until ``expected`` points settle.

    With ``progress``, print the points written so far and their rate every few seconds.
    """
    start = take_snapshot(influxd, influxd_tree, peer_tree, claimed)
    publisher.go()

    def show(snap: Snapshot) -> None:
        assert progress is not None
        points = snap.point_req - start.point_req
        progress(
            f"{tag}: {points:,} points written so far"
            f" ({points / max(snap.t - start.t, 1e-9):,.0f}/s)"
        )

    completion = watch_until_stored(
        influxd,
        influxd_tree,
        peer_tree,
        start=start,
        expected=expected,
        settle_s=limits.settle_s,
        timeout_s=limits.burst_timeout_s,
        claimed=claimed,
        progress=None if progress is None else show,
    )
    return start, completion


def burst_until_stored(
    influxd: Influxd,
    influxd_tree: ProcessTree,
    peer_tree: ProcessTree,
    claimed: Callable[[], float | None] | None,
    publisher: PublisherProcess,
    *,
    expected: int,
    limits: BurstLimits,
    tag: str,
    progress: Progress,
) -> tuple[Snapshot, Completion, dict[str, Any]]:
    """Release the burst, watch it stored (printing the write rate), wait for the publisher.

    Returns the snapshot at the start, the watch's completion and the publisher's own
    report; shared by the peer and the adapter benchmarks.
    """
    start, completion = release_and_watch(
        influxd, influxd_tree, peer_tree, claimed, publisher,
        expected=expected, limits=limits, tag=tag, progress=progress,
    )  # fmt: skip
    done = publisher.wait_done(max(60.0, limits.burst_timeout_s))
    return start, completion, done
