"""Where and how the gateway writes to InfluxDB, and how long each class of data is kept."""

from __future__ import annotations

import ipaddress
import re
import ssl
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from contract.tls import TlsSettings
from gateway.settings.base import Frozen, default_spill_dir

__all__ = ["InfluxSettings", "RetentionSettings", "retention_hours"]

_DURATION = re.compile(r"^(\d{1,6})([hdw])$")
_HOURS = {"h": 1, "d": 24, "w": 168}


def retention_hours(text: str) -> int | None:
    """Hours of an InfluxQL retention duration (``30d``, ``12h``, ``52w``); None for ``INF``.

    Raises ValueError naming what is accepted: whole hours, days or weeks (influxd keeps
    data at least an hour), or ``INF`` (for ever).
    """
    if text == "INF":
        return None
    m = _DURATION.match(text)
    if m is None or int(m.group(1)) == 0:
        raise ValueError(
            f"expected a duration of whole hours, days or weeks (12h, 30d, 52w) or INF;"
            f" got {text!r}"
        )
    return int(m.group(1)) * _HOURS[m.group(2)]


class RetentionSettings(Frozen):
    """How long each class of measurement is kept: one InfluxDB 1.x retention policy each.

    ``raw`` holds ``readings`` and ``late_readings``; ``aggregates`` holds
    ``aggregates`` and ``alarms``; ``deadletters`` holds ``deadletters``. At start the
    gateway (and ``sensorgate influx setup``) creates the policies, or alters one whose
    duration differs, and makes the raw one the database's default (docs/gateway.md).
    """

    enabled: bool | None = None
    """None (automatic): on for InfluxDB 1.x (``api = "v1"`` without a token), off
    otherwise. True with a token on the v1 API: InfluxDB 2.x with one bucket per policy,
    named ``<database>/<policy>`` (docs/influxdb.md); the v2 and v3 APIs have no
    retention policies, so True is refused there. False: everything in the database's
    default policy, as before retention existed."""
    raw: str = "30d"
    """How long raw readings (and late readings) are kept: ``12h``, ``30d``, ``52w`` or
    ``INF``. At least ``ingest.max_past_s``, or InfluxDB would refuse old readings."""
    aggregates: str = "400d"
    """How long window aggregates and alarm events are kept."""
    deadletters: str = "14d"
    """How long dead letters are kept."""
    raw_policy: str = "raw"
    """Name of the raw policy (made the database's DEFAULT, so unqualified reads of
    ``readings`` keep working)."""
    aggregates_policy: str = "aggregates"
    """Name of the policy of ``aggregates`` and ``alarms``."""
    deadletters_policy: str = "deadletters"
    """Name of the policy of ``deadletters``."""

    @field_validator("raw", "aggregates", "deadletters")
    @classmethod
    def _valid_duration(cls, value: str) -> str:
        retention_hours(value)
        return value

    @field_validator("raw_policy", "aggregates_policy", "deadletters_policy")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not 1 <= len(value) <= 64 or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError(f"expected 1 to 64 printable characters; got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_duration_per_name(self) -> RetentionSettings:
        seen: dict[str, str] = {}
        for kind in ("raw", "aggregates", "deadletters"):
            name, duration = getattr(self, f"{kind}_policy"), getattr(self, kind)
            if seen.setdefault(name, duration) != duration:
                raise ValueError(
                    f"policy {name!r} is given two durations ({seen[name]} and {duration});"
                    " give the classes distinct policy names or the same duration"
                )
        return self


class InfluxSettings(Frozen):
    """Where readings, aggregates, alarms and dead letters are written."""

    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2", "v3"] = "v1"
    """Write API. ``v1``: ``/write?db=`` (InfluxDB 1.x, and the v1 compatibility API of
    2.x and 3.x with ``token``); ``v2``: ``/api/v2/write`` via influxdb-client (``org``,
    ``bucket``, ``token``; InfluxDB 2.x, Cloud, 3.x); ``v3``: ``/api/v3/write_lp?db=``
    (InfluxDB 3 Core and Enterprise; ``database``, ``token``). Reads are InfluxQL on
    ``/query`` whatever the API (docs/influxdb.md)."""
    database: str = "sensorgate"
    """v1 and v3 database, and the InfluxQL database of queries (on 2.x the database
    name of the DBRP mapping to ``bucket``: ``sensorgate influx setup`` creates it)."""
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    """API token of InfluxDB 2.x/3.x (sent as ``Authorization: Token``, ``Bearer`` on v3)."""
    org: str | None = None
    """InfluxDB 2.x organization (name) of ``bucket``."""
    bucket: str | None = None
    """InfluxDB 2.x bucket that the v2 API writes to."""
    tls: TlsSettings | None = None
    """TLS of an ``https://`` url: the CA that signed the server (none: the system's trust
    store), a client certificate, a server name. Ignored for ``http://``."""
    dbrp_retention_policy: str = "autogen"
    """InfluxDB 2.x: retention policy name of the DBRP mapping (``database`` plus this
    name to ``bucket``) that lets InfluxQL read the bucket; made the default mapping."""
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5_000
    """Lines per write request (the pipelined writer coalesces bodies up to about this)."""
    timeout_s: Annotated[float, Field(gt=0)] = 10.0
    gzip: bool | None = None
    """Compress write bodies. None: automatic, off for a loopback host (``localhost``,
    127.0.0.0/8, ``::1``: compressing costs more CPU than it saves), on otherwise; True
    or False force it. Read :attr:`use_gzip` for the decision."""
    max_in_flight: Annotated[int, Field(ge=1, le=64)] = 2
    """Most write requests one pipelined writer (the points sink's) has in flight at
    once: influxd 1.x answers 500 "engine: error syncing wal" under many concurrent
    writes. The synchronous writers (alarms, dead letters) keep one."""
    aggregate_fields: tuple[
        Literal["count", "mean", "min", "max", "stddev", "first", "last"], ...
    ] = ("count", "mean", "min", "max")
    """Fields stored on each ``aggregates`` point. influxd's write cost grows with the
    fields, so the default is lean; add ``stddev``, ``first``, ``last`` when wanted
    (aggregate rules see every field whatever is stored)."""
    reading_seq: bool = False
    """Also store each raw reading's event sequence (``seq`` field). Off by default:
    one field per point is what keeps influxd's write cost low."""
    max_pending_lines: Annotated[int, Field(ge=1)] = 200_000
    """Lines a pipelined writer holds that are not yet sent; beyond, ``submit`` blocks."""
    retry_max_s: Annotated[float, Field(gt=0)] = 30.0
    """Give up a write after retrying for this long (then the caller decides)."""
    spill_enabled: bool = True
    """Spill writes that keep failing to a local on-disk buffer and drain it later."""
    spill_dir: Path = Field(default_factory=default_spill_dir)
    """Where the spill buffers live (one SQLite file per writer); must survive restarts."""
    spill_max_bytes: Annotated[int, Field(ge=1)] = 1 << 30
    """Budget of the spill of one writer (compressed bytes); when full, writes block."""
    spill_after_s: Annotated[float, Field(ge=0)] = 5.0
    """Retry a failing write this long before spilling it (the gateway keeps flowing)."""
    drain_rate: Annotated[float, Field(gt=0)] = 100_000.0
    """Most points per second sent while draining the spill, to spare a recovering server."""
    drain_backoff_max_s: Annotated[float, Field(gt=0)] = 10.0
    """Longest pause between attempts while InfluxDB is still failing during a drain."""
    retention: RetentionSettings = RetentionSettings()
    """Retention policies per class of measurement (InfluxDB 1.x)."""

    @property
    def retention_active(self) -> bool:
        """Whether writes and reads use the retention policies of :attr:`retention`."""
        if self.retention.enabled is not None:
            return self.retention.enabled
        return self.api == "v1" and self.token is None

    @model_validator(mode="after")
    def _retention_needs_the_v1_api(self) -> InfluxSettings:
        if self.retention.enabled and self.api != "v1":
            raise ValueError(
                f"retention.enabled: retention policies need the v1 write API (/write?rp=);"
                f" the {self.api} API writes to one {'bucket' if self.api == 'v2' else 'database'}"
                " whatever the policy. Set retention.enabled = false and give that"
                f" {'bucket' if self.api == 'v2' else 'database'} a retention period, or use"
                " api = 'v1' with a token and one bucket per policy (docs/influxdb.md)"
            )
        return self

    def verify(self) -> ssl.SSLContext | bool:
        """Return what HTTP clients verify the server with: a context from ``tls``, or True."""
        return self.tls.ssl_context() if self.tls is not None else True

    @property
    def use_gzip(self) -> bool:
        """Whether write bodies are gzipped: ``gzip`` if set, else True unless loopback."""
        if self.gzip is not None:
            return self.gzip
        return not _is_loopback(self.url)


def _is_loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name other than localhost: assume it is remote
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))
