"""What the InfluxDB setup steps share: the report they fill in, and the HTTP calls.

:class:`SetupReport` holds one :class:`Step` per thing checked or made, with a
:data:`Status`; :class:`SetupApi` makes the calls, each answered as (status code,
parsed JSON or text, headers). Answers are parsed JSON of whatever shape the server
sends, hence ``Any``: each step looks only at the keys it needs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx

from gateway.settings import InfluxSettings

__all__ = ["READY", "SetupApi", "SetupReport", "Status", "Step", "denied", "message"]

Status = Literal["ok", "created", "changed", "missing", "differs", "skipped", "refused", "failed"]

READY: frozenset[Status] = frozenset({"ok", "created", "changed", "skipped"})
"""The statuses of a step that leave InfluxDB ready for the gateway."""


@dataclass(frozen=True, slots=True)
class Step:
    """One thing checked or made, and how it went."""

    name: str
    status: Status
    detail: str


@dataclass(slots=True)
class SetupReport:
    """What :func:`setup_influx` found and did."""

    url: str
    api: str
    server: str = "unknown"
    """The server's version header (``X-Influxdb-Version``), when it sent one."""
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether everything the gateway needs is in place."""
        return all(s.status in READY for s in self.steps)

    def add(self, name: str, status: Status, detail: str) -> Step:
        """Record one step."""
        step = Step(name, status, detail)
        self.steps.append(step)
        return step

    def to_json(self) -> str:
        """Return the report as a JSON document."""
        return json.dumps(
            {
                "url": self.url,
                "api": self.api,
                "server": self.server,
                "ok": self.ok,
                "steps": [asdict(s) for s in self.steps],
            },
            indent=2,
        )

    def to_text(self) -> str:
        """Return the report as a few aligned lines."""
        width = max((len(s.name) for s in self.steps), default=4)
        lines = [f"InfluxDB {self.url} ({self.api} API, server {self.server})"]
        lines += [f"  {s.name:<{width}}  {s.status:<8} {s.detail}" for s in self.steps]
        lines.append("ready" if self.ok else "NOT ready: see the steps above")
        return "\n".join(lines)


class SetupApi:
    """The HTTP calls, each answered as (status code, parsed JSON or text)."""

    def __init__(self, settings: InfluxSettings, transport: httpx.BaseTransport | None) -> None:
        headers = {}
        auth = None
        if settings.token is not None:
            scheme = "Bearer" if settings.api == "v3" else "Token"
            headers["Authorization"] = f"{scheme} {settings.token.get_secret_value()}"
        elif settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else ""
            auth = httpx.BasicAuth(settings.username, password)
        self.http = httpx.Client(
            base_url=settings.url,
            headers=headers,
            auth=auth,
            timeout=settings.timeout_s,
            transport=transport,
            verify=settings.verify(),
        )

    def call(
        self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, Any, httpx.Headers]:
        """Make one request; return the status, the parsed JSON (or text) and the headers."""
        resp = self.http.request(method, path, params=params, json=body)
        try:
            data: Any = resp.json()
        except ValueError:
            data = resp.text
        return resp.status_code, data, resp.headers

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()


def message(data: Any) -> str:
    """Return the server's message from an answer (JSON or text), shortened."""
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or data)[:300]
    return str(data).strip()[:300]


def denied(status: int) -> bool:
    """Return whether a status says the credentials may not do it (401, 403)."""
    return status in (401, 403)
