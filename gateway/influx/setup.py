"""Prepare an InfluxDB for the gateway: database, bucket, DBRP mapping; check InfluxQL.

:func:`setup_influx` is ``sensorgate influx setup``. What it does depends on
``InfluxSettings.api``:

- ``v1`` (InfluxDB 1.x, or the v1 API of 2.x/3.x with a token): on 1.x, create
  ``database`` if missing, then its retention policies (``influx.retention``: raw, the
  DEFAULT; aggregates; dead letters), altering one whose duration differs; with a
  token (2.x/3.x), where ``CREATE DATABASE`` and retention policies do not exist, only
  check that InfluxQL answers for ``database``.
- ``v2`` (InfluxDB 2.x, Cloud): find ``org``; create ``bucket`` if missing; create the
  DBRP mapping ``database``/``dbrp_retention_policy`` -> ``bucket`` (the default one of
  ``database``) if missing, so that InfluxQL reads (``sensorgate query``, the
  dashboard, Grafana) find the data the v2 API wrote, and one mapping per retention
  policy name of ``influx.retention`` to the same bucket, so that reads naming the
  policies (the Grafana dashboards) find it too; check InfluxQL.
- ``v3`` (InfluxDB 3 Core/Enterprise): create ``database`` if missing (it would also
  be created by the first write); check InfluxQL.

Each step is one :class:`Step` with a status: ``ok`` (already there), ``created``,
``changed`` (a retention policy altered to the configured duration, or made the
default), ``missing`` (not there, and ``create=False``), ``differs`` (there but not as
configured, and ``create=False``), ``skipped`` (not needed here), ``refused`` (the
credentials may not do it: the step says what an admin should run instead) or
``failed``. Nothing is deleted, and nothing but the gateway's own retention policies
is changed: a mapping of ``database`` to another bucket is reported, not replaced.
Every call is idempotent.

HTTP goes through one ``httpx`` client; ``transport`` is the seam for tests. Errors of
the network are reported as ``failed`` steps, never raised: the report is the result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from gateway.influx.layout import StorageLayout
from gateway.influx.query import quote_ident
from gateway.influx.retention import plan
from gateway.influx.setup_steps import READY, SetupApi, SetupReport, Status, Step, denied, message
from gateway.influx.setup_v2 import setup_v2
from gateway.settings import InfluxSettings

__all__ = ["READY", "SetupReport", "Status", "Step", "setup_influx"]


def setup_influx(
    settings: InfluxSettings,
    *,
    create: bool = True,
    transport: httpx.BaseTransport | None = None,
) -> SetupReport:
    """Check, and with ``create`` make, what the gateway needs on its InfluxDB.

    See the module docstring for the steps per API. Never raises for the server's
    answers or the network: they become ``failed`` or ``refused`` steps.
    """
    report = SetupReport(url=settings.url, api=settings.api)
    api = SetupApi(settings, transport)
    try:
        if not _ping(api, settings, report):
            return report
        steps: dict[str, Callable[[SetupApi, InfluxSettings, SetupReport, bool], None]] = {
            "v1": _setup_v1,
            "v2": setup_v2,
            "v3": _setup_v3,
        }
        steps[settings.api](api, settings, report, create)
        _check_influxql(api, settings, report)
    except httpx.HTTPError as exc:
        report.add("connection", "failed", f"cannot reach InfluxDB at {settings.url}: {exc}")
    finally:
        api.close()
    return report


def _ping(api: SetupApi, settings: InfluxSettings, report: SetupReport) -> bool:
    try:
        status, data, headers = api.call("GET", "/ping")
    except httpx.HTTPError as exc:
        report.add("ping", "failed", f"cannot reach InfluxDB at {settings.url}: {exc}")
        return False
    report.server = headers.get("X-Influxdb-Version", "unknown")
    build = headers.get("X-Influxdb-Build")
    if build:
        report.server += f" ({build})"
    if denied(status):
        report.add(
            "ping", "refused", f"{status}: the token was refused ({message(data)}); check it"
        )
        return False
    if status >= 300:
        report.add("ping", "failed", f"answered {status}: {message(data)}")
        return False
    hint = _api_hint(settings.api, report.server)
    report.add("ping", "ok", "answering" + (f"; {hint}" if hint else ""))
    return True


def _api_hint(api: str, server: str) -> str:
    """Say when the configured API does not look like the server's."""
    major = server.lstrip("v")[:1]
    if major == "1" and api != "v1":
        return f"this looks like InfluxDB 1.x, which has no {api} write API: use api = 'v1'"
    if major == "2" and api == "v3":
        return "this looks like InfluxDB 2.x, which has no v3 write API: use 'v2' or 'v1'"
    return ""


def _setup_v1(api: SetupApi, settings: InfluxSettings, report: SetupReport, create: bool) -> None:
    if settings.token is not None:
        report.add(
            "database",
            "skipped",
            "a token means InfluxDB 2.x/3.x: no CREATE DATABASE there (2.x: use api = 'v2'"
            " with org and bucket so that this command maps the bucket; 3.x: created on the"
            " first write)",
        )
        layout = StorageLayout.of(settings)
        if layout.active:
            buckets = ", ".join(f"{settings.database}/{p.name}" for p in layout.distinct())
            report.add(
                "retention",
                "skipped",
                f"no retention policies on 2.x/3.x: writes name rp= of each class; on 2.x"
                f" create the buckets {buckets} with their retention (docs/influxdb.md)",
            )
        return
    db = settings.database
    status, data, _ = api.call("GET", "/query", params={"q": "SHOW DATABASES"})
    if denied(status):
        report.add("database", "refused", f"{status}: not allowed to list databases")
        return
    names = {
        row[0]
        for result in (data.get("results", []) if isinstance(data, dict) else [])
        for series in result.get("series", [])
        for row in series.get("values", [])
    }
    if db in names:
        report.add("database", "ok", f"database {db!r} exists")
        _setup_retention(api, settings, report, create)
        return
    if not create:
        report.add("database", "missing", f"database {db!r} missing (--check: not created)")
        return
    status, data, _ = api.call("POST", "/query", params={"q": f"CREATE DATABASE {quote_ident(db)}"})
    error = _influxql_error(data)
    if denied(status) or (error and "authoriz" in error):
        report.add(
            "database",
            "refused",
            f"not allowed to create {db!r}; an admin runs: CREATE DATABASE {quote_ident(db)}",
        )
    elif status >= 300 or error:
        report.add("database", "failed", f"CREATE DATABASE answered {status}: {error or data}")
    else:
        report.add("database", "created", f"database {db!r} created")
        _setup_retention(api, settings, report, create)


_RETENTION_OFF = "or set influx.retention.enabled = false to keep everything in the default policy"


def _setup_retention(
    api: SetupApi, settings: InfluxSettings, report: SetupReport, create: bool
) -> None:
    """One step per retention policy of the layout (InfluxDB 1.x; none when retention is off)."""
    layout = StorageLayout.of(settings)
    if not layout.active:
        return
    db = settings.database
    status, data, _ = api.call(
        "GET", "/query", params={"q": f"SHOW RETENTION POLICIES ON {quote_ident(db)}"}
    )
    error = _influxql_error(data)
    if denied(status) or (error and "authoriz" in error):
        report.add(
            "retention",
            "refused",
            f"not allowed to list the retention policies of {db!r} (influx.retention); grant"
            f" the gateway's user READ on it, {_RETENTION_OFF}",
        )
        return
    if status >= 300 or error:
        report.add("retention", "failed", f"SHOW RETENTION POLICIES answered {status}: {error}")
        return
    rows = [
        dict(zip(series["columns"], values, strict=True))
        for result in data.get("results", [])
        for series in result.get("series", [])
        for values in series.get("values", [])
    ]
    for change in plan(db, layout.distinct(), rows):
        name = f"retention {change.policy.name}"
        if change.action == "ok":
            report.add(name, "ok", change.detail)
            continue
        assert change.statement is not None
        if not create:
            status_: Status = "missing" if change.action == "create" else "differs"
            report.add(name, status_, f"{change.detail} (--check: not changed)")
            continue
        status, data, _ = api.call("POST", "/query", params={"q": change.statement})
        error = _influxql_error(data)
        if denied(status) or (error and "authoriz" in error):
            report.add(
                name,
                "refused",
                f"not allowed to {change.action} it (influx.retention needs an admin once);"
                f" an admin runs: {change.statement}; {_RETENTION_OFF}",
            )
        elif status >= 300 or error:
            report.add(
                name,
                "failed",
                f"{change.statement} answered {status}: {error or message(data)}"
                " (influx.retention)",
            )
        else:
            done: Status = "created" if change.action == "create" else "changed"
            report.add(name, done, change.detail)


def _influxql_error(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    if "error" in data:
        return str(data["error"])
    for result in data.get("results", []):
        if "error" in result:
            return str(result["error"])
    return ""


def _setup_v3(api: SetupApi, settings: InfluxSettings, report: SetupReport, create: bool) -> None:
    db = settings.database
    status, data, _ = api.call("GET", "/api/v3/configure/database", params={"format": "json"})
    if denied(status):
        report.add("database", "refused", f"{status}: the token may not list databases")
        return
    if status == 404:
        report.add("database", "skipped", "no database API here: created by the first write")
        return
    if status >= 300:
        report.add("database", "failed", f"listing databases answered {status}: {message(data)}")
        return
    rows = data if isinstance(data, list) else []
    if any(db in row.values() for row in rows if isinstance(row, dict)):
        report.add("database", "ok", f"database {db!r} exists")
        return
    if not create:
        report.add("database", "missing", f"database {db!r} missing (--check; or the first write)")
        return
    status, data, _ = api.call("POST", "/api/v3/configure/database", body={"db": db})
    if status == 409:
        report.add("database", "ok", f"database {db!r} exists")
    elif denied(status):
        report.add(
            "database",
            "refused",
            f"the token may not create databases; an admin runs: influxdb3 create database {db}"
            " (or let the gateway's first write create it)",
        )
    elif status >= 300:
        report.add("database", "failed", f"creating {db!r} answered {status}: {message(data)}")
    else:
        report.add("database", "created", f"database {db!r} created")


def _check_influxql(api: SetupApi, settings: InfluxSettings, report: SetupReport) -> None:
    if not report.ok:
        return
    db = settings.database
    status, data, _ = api.call(
        "GET", "/query", params={"db": db, "q": f"SHOW MEASUREMENTS ON {quote_ident(db)}"}
    )
    error = _influxql_error(data)
    if denied(status):
        report.add("influxql", "refused", f"{status}: the token may not query {db!r}")
    elif status >= 300 or error:
        report.add(
            "influxql",
            "failed",
            f"InfluxQL on {db!r} answered {status}: {error or message(data)}",
        )
    else:
        report.add("influxql", "ok", f"InfluxQL reads {db!r} (/query)")
