"""influxd's own ceiling: the workload's readings posted straight to ``/write``.

The readings of the burst are rendered as line protocol (nanosecond times) in batches of
5,000 points before the clock starts; then two connections post them concurrently, each
taking the next batch as soon as its previous one is answered. A 5xx answer is retried
(writes are idempotent: the same point overwrites itself). The ceiling is the most any
peer could store on this machine, and the influxd CPU it costs per point is the floor of
every peer's influxd CPU.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import httpx

from contract.errors import StorageError
from gateway.bench.workload import SITE, Workload, burst_base_us, iter_readings

__all__ = ["BATCH_POINTS", "CONNECTIONS", "CeilingRun", "post_batches", "render_batches"]

BATCH_POINTS = 5_000
CONNECTIONS = 2
_RETRIES = 5


def render_batches(
    workload: Workload, *, batch_points: int = BATCH_POINTS, now_us: int | None = None
) -> list[bytes]:
    """Return the burst's readings as line-protocol bodies of ``batch_points`` points."""
    base = burst_base_us(workload, now_us)
    batches: list[bytes] = []
    lines: list[str] = []
    for device, sensor, metric, value, t_us in iter_readings(workload, base):
        lines.append(
            f"readings,site={SITE},device={device},sensor={sensor},metric={metric}"
            f" value={value} {t_us}000"
        )
        if len(lines) == batch_points:
            batches.append("\n".join(lines).encode())
            lines = []
    if lines:
        batches.append("\n".join(lines).encode())
    return batches


@dataclass
class CeilingRun:
    """What posting the batches took."""

    first_request: float
    """Monotonic time the first request was sent."""
    last_response: float
    """Monotonic time the last answer came."""
    requests: int
    retries: int

    @property
    def seconds(self) -> float:
        """From the first request to the last answer."""
        return self.last_response - self.first_request


def post_batches(
    url: str, database: str, batches: list[bytes], *, connections: int = CONNECTIONS
) -> CeilingRun:
    """Post ``batches`` over ``connections`` concurrent connections; raise if one fails."""
    lock = threading.Lock()
    next_index = [0]
    retries = [0]
    errors: list[str] = []
    params = {"db": database, "precision": "ns"}

    def take() -> bytes | None:
        with lock:
            if errors or next_index[0] >= len(batches):
                return None
            body = batches[next_index[0]]
            next_index[0] += 1
            return body

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=60.0) as http:
            while (body := take()) is not None:
                for attempt in range(_RETRIES + 1):
                    try:
                        response = http.post("/write", params=params, content=body)
                    except httpx.HTTPError as exc:
                        status, text = 0, str(exc)
                    else:
                        status, text = response.status_code, response.text
                    if status == 204:
                        break
                    if (status and status < 500) or attempt == _RETRIES:
                        with lock:
                            errors.append(f"HTTP {status}: {text[:300]}")
                        return
                    with lock:
                        retries[0] += 1
                    time.sleep(0.05 * (attempt + 1))  # back off before a retry

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    first = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    last = time.monotonic()
    if errors:
        raise StorageError(f"influxd refused a write of the ceiling run: {errors[0]}")
    return CeilingRun(first, last, len(batches) + retries[0], retries[0])
