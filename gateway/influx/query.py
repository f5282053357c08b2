"""Run InfluxQL over ``/query`` (InfluxDB 1.x, and the v1 compatibility API of 2.x and 3.x).

On 2.x the ``database`` must be mapped to a bucket (a DBRP mapping, made by
``sensorgate influx setup``); on 3.x it is the database itself.
"""

from __future__ import annotations

from typing import Any

import httpx

from contract.errors import StorageError
from gateway.settings import InfluxSettings

__all__ = ["InfluxQL", "quote_ident", "quote_string"]


def quote_ident(name: str) -> str:
    """Quote an identifier (measurement, tag key, database) for InfluxQL."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """Quote a string literal (a tag value in a WHERE clause) for InfluxQL."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxQL:
    """A small InfluxQL client returning rows as dicts.

    :attr:`layout` says where each measurement is stored (its retention policy): read
    ``f"SELECT ... FROM {client.layout.aggregates}"``, never a bare measurement name.
    """

    def __init__(self, settings: InfluxSettings) -> None:
        from gateway.influx.layout import StorageLayout  # it quotes with quote_ident

        self.settings = settings
        self.layout = StorageLayout.of(settings)
        headers = {}
        if settings.token is not None:
            # InfluxDB 2.x's v1 API wants "Token"; 3.x takes "Bearer" (and "Token").
            scheme = "Bearer" if settings.api == "v3" else "Token"
            headers["Authorization"] = f"{scheme} {settings.token.get_secret_value()}"
        auth = None
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else ""
            auth = httpx.BasicAuth(settings.username, password)
        self._http = httpx.Client(
            base_url=settings.url,
            auth=auth,
            headers=headers,
            timeout=settings.timeout_s,
            verify=settings.verify(),
        )

    def query(self, q: str) -> list[dict[str, Any]]:
        """Run one statement and return its rows (tags of GROUP BY merged into each row)."""
        try:
            resp = self._http.get(
                "/query", params={"db": self.settings.database, "q": q, "epoch": "ns"}
            )
        except httpx.HTTPError as exc:
            raise StorageError(f"cannot reach InfluxDB at {self.settings.url}: {exc}") from exc
        if resp.status_code >= 400:
            raise StorageError(f"query failed ({resp.status_code}): {resp.text[:500]}")
        rows: list[dict[str, Any]] = []
        for result in resp.json().get("results", []):
            if "error" in result:
                raise StorageError(f"query {q!r} failed: {result['error']}")
            for series in result.get("series", []):
                tags = series.get("tags", {})
                for values in series["values"]:
                    rows.append({**tags, **dict(zip(series["columns"], values, strict=True))})
        return rows

    def scalar(self, q: str, default: Any = 0) -> Any:
        """Return the first non-time value of the first row, or ``default``."""
        rows = self.query(q)
        if not rows:
            return default
        return next((v for k, v in rows[0].items() if k != "time"), default)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()
