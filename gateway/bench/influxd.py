"""What the benchmark asks influxd 1.x: create the database, write statistics, one count.

Completion is detected from ``/debug/vars`` (the ``write`` statistics' ``pointReq``,
points handed to the storage engine; the ``httpd`` statistics' ``writeReq``, write
requests), which costs influxd nothing; the stored readings are counted once at the
end with ``SELECT count("value") FROM "readings"``, because a count over millions of
points loads the server and must not be polled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from contract.errors import StorageError
from gateway.influx.layout import StorageLayout

__all__ = ["Influxd", "WriteStats"]


@dataclass(frozen=True, slots=True)
class WriteStats:
    """Cumulative write statistics of one influxd."""

    point_req: int
    """Points handed to the storage engine (``write`` / ``pointReq``)."""
    write_req: int
    """HTTP write requests, empty ones included (``httpd`` / ``writeReq``)."""
    server_errors: int
    """HTTP 5xx answers (``httpd`` / ``serverError``)."""


class Influxd:
    """One influxd 1.x at ``url``, with the benchmark's ``database``."""

    def __init__(self, url: str, database: str) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self._http = httpx.Client(base_url=self.url, timeout=30.0)

    def close(self) -> None:
        """Close the HTTP connection."""
        self._http.close()

    def __enter__(self) -> Influxd:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _get(self, path: str, **params: str) -> httpx.Response:
        try:
            response = self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise StorageError(f"influxd at {self.url} did not answer {path}: {exc}") from exc
        if response.status_code >= 400:
            raise StorageError(
                f"influxd at {self.url} answered {path} with HTTP {response.status_code}:"
                f" {response.text[:300]}"
            )
        return response

    def create_database(self) -> None:
        """Create the database (idempotent)."""
        try:
            response = self._http.post("/query", params={"q": f'CREATE DATABASE "{self.database}"'})
        except httpx.HTTPError as exc:
            raise StorageError(f"influxd at {self.url} did not answer: {exc}") from exc
        if response.status_code != 200 or '"error"' in response.text:
            raise StorageError(
                f"influxd at {self.url} refused CREATE DATABASE {self.database}: {response.text}"
            )

    def write_stats(self) -> WriteStats:
        """Return the cumulative write statistics from ``/debug/vars``."""
        doc: dict[str, Any] = self._get("/debug/vars").json()
        point_req = write_req = errors = 0
        for entry in doc.values():
            if not isinstance(entry, dict):
                continue
            values = entry.get("values") or {}
            if entry.get("name") == "write":
                point_req += int(values.get("pointReq", 0))
            elif entry.get("name") == "httpd":
                write_req += int(values.get("writeReq", 0))
                errors += int(values.get("serverError", 0))
        return WriteStats(point_req, write_req, errors)

    def count_readings(self, layout: StorageLayout | None = None) -> int:
        """Return ``count("value")`` over the ``readings`` measurement (0 if there is none).

        ``layout`` names its retention policy (the gateway's); none: the database's
        default policy, where the other peers write (and the gateway's raw policy is
        the default one too).
        """
        source = (layout or StorageLayout.single()).readings
        doc = self._get("/query", db=self.database, q=f'SELECT count("value") FROM {source}').json()
        result = (doc.get("results") or [{}])[0]
        if "error" in result:
            raise StorageError(f"influxd could not count the readings: {result['error']}")
        series = result.get("series") or []
        if not series:
            return 0
        return int(series[0]["values"][0][1])
