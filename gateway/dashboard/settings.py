"""The dashboard's settings: ``[dashboard]`` of the gateway settings (``SENSORGATE_DASHBOARD__*``).

The access token is a secret: it comes from ``SENSORGATE_DASHBOARD__TOKEN`` or from a
file (``SENSORGATE_DASHBOARD__TOKEN_FILE``, ``--token-file``), never from the command
line, where every user of the machine can read it (``ps``, ``/proc/PID/cmdline``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["TOKEN_ENV", "TOKEN_FILE_ENV", "DashboardSettings"]

TOKEN_ENV = "SENSORGATE_DASHBOARD__TOKEN"
"""The environment variable that holds the access token."""
TOKEN_FILE_ENV = "SENSORGATE_DASHBOARD__TOKEN_FILE"
"""The environment variable that names a file holding the access token."""


class DashboardSettings(BaseModel):
    """Where the web dashboard listens, who may read it and how much it takes on."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    host: str = "127.0.0.1"
    """Listen address."""
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    """Listen port (0: any free port)."""
    read_only: bool = False
    """No acknowledge action (it answers 403)."""
    public_read: bool = False
    """The read API (fleet, alarms, device, events) answers without the token. Off by
    default: every ``/api/`` route needs the token. Acknowledging always needs it."""
    token: SecretStr | None = None
    """Access token of the API (``Authorization: Bearer``, or the session cookie the page
    gets for it). None, and no ``token_file``: a random one is made at start and shown
    once, in the URL the command prints."""
    token_file: Path | None = None
    """A file holding the access token (its first line; surrounding blanks ignored). Give
    the token or a token file, not both."""
    allowed_hosts: tuple[str, ...] | None = None
    """Host header names the server answers (DNS rebinding). None: the listen address,
    ``localhost``, ``127.0.0.1`` and ``::1``. A list replaces those."""
    request_timeout_s: Annotated[float, Field(gt=0, le=600)] = 15.0
    """Longest a request may take (a live event stream excepted): 503 after that."""
    max_body_bytes: Annotated[int, Field(ge=256, le=1_048_576)] = 16_384
    """Largest request body (413 beyond); the acknowledge action needs about 200 bytes."""
    workers: Annotated[int, Field(ge=1, le=64)] = 4
    """Threads for blocking work (InfluxDB queries and their JSON)."""
    queued_calls: Annotated[int, Field(ge=1, le=10_000)] = 64
    """Blocking calls that may wait for a worker; beyond, requests answer 503."""
    max_streams: Annotated[int, Field(ge=1, le=100_000)] = 1_000
    """Live event streams (open browser tabs) served at once; beyond, 503."""
    stream_queue: Annotated[int, Field(ge=1, le=10_000)] = 64
    """Events buffered for one stream; a browser that falls further behind is dropped
    (it reconnects and starts from the current state) so it never holds up the others."""
    keepalive_s: Annotated[float, Field(gt=0, le=300)] = 15.0
    """Comment line sent on an idle event stream, so proxies keep it open."""
    poll_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    """How often fleet and active alarms are read from InfluxDB."""
    offline_after_s: Annotated[float, Field(gt=0)] = 60.0
    """Silence after which a device shows offline."""
