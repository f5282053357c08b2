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

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx

from gateway.influx.layout import StorageLayout
from gateway.influx.query import quote_ident
from gateway.influx.retention import plan
from gateway.settings import InfluxSettings

__all__ = ["READY", "SetupReport", "Status", "Step", "setup_influx"]

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


class _Api:
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
        resp = self.http.request(method, path, params=params, json=body)
        try:
            data: Any = resp.json()
        except ValueError:
            data = resp.text
        return resp.status_code, data, resp.headers

    def close(self) -> None:
        self.http.close()


def _message(data: Any) -> str:
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or data)[:300]
    return str(data).strip()[:300]


def _denied(status: int) -> bool:
    return status in (401, 403)


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
    api = _Api(settings, transport)
    try:
        if not _ping(api, settings, report):
            return report
        steps: dict[str, Callable[[_Api, InfluxSettings, SetupReport, bool], None]] = {
            "v1": _setup_v1,
            "v2": _setup_v2,
            "v3": _setup_v3,
        }
        steps[settings.api](api, settings, report, create)
        _check_influxql(api, settings, report)
    except httpx.HTTPError as exc:
        report.add("connection", "failed", f"cannot reach InfluxDB at {settings.url}: {exc}")
    finally:
        api.close()
    return report


def _ping(api: _Api, settings: InfluxSettings, report: SetupReport) -> bool:
    try:
        status, data, headers = api.call("GET", "/ping")
    except httpx.HTTPError as exc:
        report.add("ping", "failed", f"cannot reach InfluxDB at {settings.url}: {exc}")
        return False
    report.server = headers.get("X-Influxdb-Version", "unknown")
    build = headers.get("X-Influxdb-Build")
    if build:
        report.server += f" ({build})"
    if _denied(status):
        report.add(
            "ping", "refused", f"{status}: the token was refused ({_message(data)}); check it"
        )
        return False
    if status >= 300:
        report.add("ping", "failed", f"answered {status}: {_message(data)}")
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


def _setup_v1(api: _Api, settings: InfluxSettings, report: SetupReport, create: bool) -> None:
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
    if _denied(status):
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
    if _denied(status) or (error and "authoriz" in error):
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
    api: _Api, settings: InfluxSettings, report: SetupReport, create: bool
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
    if _denied(status) or (error and "authoriz" in error):
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
        if _denied(status) or (error and "authoriz" in error):
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
                f"{change.statement} answered {status}: {error or _message(data)}"
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


def _setup_v2(api: _Api, settings: InfluxSettings, report: SetupReport, create: bool) -> None:
    missing = [n for n in ("token", "org", "bucket") if getattr(settings, n) is None]
    if missing:
        report.add("settings", "failed", f"the v2 API needs {', '.join(missing)} (influx.*)")
        return
    org_id = _find_org(api, settings, report)
    if org_id is None:
        return
    bucket_id = _ensure_bucket(api, settings, report, org_id, create)
    if bucket_id is None:
        return
    _ensure_dbrps(api, settings, report, org_id, bucket_id, create)


def _find_org(api: _Api, settings: InfluxSettings, report: SetupReport) -> str | None:
    org = settings.org or ""
    status, data, _ = api.call("GET", "/api/v2/orgs", params={"org": org})
    if _denied(status):
        report.add("org", "refused", f"{status}: the token may not read organization {org!r}")
        return None
    orgs = data.get("orgs", []) if isinstance(data, dict) and status < 300 else []
    found = next((o for o in orgs if o.get("name") == org), None)
    if found is None:
        report.add(
            "org", "failed", f"no organization {org!r} visible to this token ({_message(data)})"
        )
        return None
    report.add("org", "ok", f"organization {org!r} ({found['id']})")
    return str(found["id"])


def _ensure_bucket(
    api: _Api, settings: InfluxSettings, report: SetupReport, org_id: str, create: bool
) -> str | None:
    bucket = settings.bucket or ""
    status, data, _ = api.call("GET", "/api/v2/buckets", params={"orgID": org_id, "name": bucket})
    if _denied(status):
        report.add("bucket", "refused", f"{status}: the token may not read bucket {bucket!r}")
        return None
    buckets = data.get("buckets", []) if isinstance(data, dict) and status < 300 else []
    found = next((b for b in buckets if b.get("name") == bucket), None)
    if found is not None:
        report.add("bucket", "ok", f"bucket {bucket!r} exists ({found['id']})")
        return str(found["id"])
    if status >= 300 and status != 404:
        report.add("bucket", "failed", f"listing buckets answered {status}: {_message(data)}")
        return None
    if not create:
        report.add("bucket", "missing", f"bucket {bucket!r} missing (--check: not created)")
        return None
    status, data, _ = api.call(
        "POST", "/api/v2/buckets", body={"orgID": org_id, "name": bucket, "retentionRules": []}
    )
    if _denied(status):
        report.add(
            "bucket",
            "refused",
            f"the token may not create buckets; an admin runs: influx bucket create"
            f" --org {settings.org} --name {bucket}",
        )
        return None
    if status >= 300:
        report.add("bucket", "failed", f"creating {bucket!r} answered {status}: {_message(data)}")
        return None
    report.add("bucket", "created", f"bucket {bucket!r} created ({data['id']}), no expiry")
    return str(data["id"])


def _ensure_dbrps(
    api: _Api,
    settings: InfluxSettings,
    report: SetupReport,
    org_id: str,
    bucket_id: str,
    create: bool,
) -> None:
    """Map ``database``/``dbrp_retention_policy``, then each retention policy name, to the bucket.

    The gateway writes every measurement to the one bucket; readers that name the
    policies (the Grafana dashboards: ``"aggregates"."aggregates"``) find it through
    ``database``/``raw``, ``/aggregates`` and ``/deadletters`` mapped to it too.
    """
    _ensure_dbrp(api, settings, report, org_id, bucket_id, create)
    if report.steps[-1].status not in READY:
        return
    r = settings.retention
    names = dict.fromkeys((r.raw_policy, r.aggregates_policy, r.deadletters_policy))
    for rp in names:
        if rp != settings.dbrp_retention_policy:
            _ensure_dbrp(api, settings, report, org_id, bucket_id, create, rp=rp)


def _ensure_dbrp(
    api: _Api,
    settings: InfluxSettings,
    report: SetupReport,
    org_id: str,
    bucket_id: str,
    create: bool,
    *,
    rp: str | None = None,
) -> None:
    """Map ``database``/``rp`` to the bucket (``rp`` None: the default mapping)."""
    db = settings.database
    step = "dbrp" if rp is None else f"dbrp {rp}"
    primary = rp is None
    rp = settings.dbrp_retention_policy if rp is None else rp
    status, data, _ = api.call("GET", "/api/v2/dbrps", params={"orgID": org_id, "db": db})
    if _denied(status):
        report.add(step, "refused", f"{status}: the token may not read DBRP mappings")
        return
    if status >= 300:
        report.add(step, "failed", f"listing DBRP mappings answered {status}: {_message(data)}")
        return
    mappings = data.get("content", []) if isinstance(data, dict) else []
    same = [m for m in mappings if m.get("database") == db and m.get("retention_policy") == rp]
    if same:
        mapping = same[0]
        if mapping.get("bucketID") != bucket_id and not primary:
            report.add(
                step,
                "skipped",
                f"{db}/{rp} is mapped to another bucket ({mapping.get('bucketID')}): reads"
                f" naming the policy {rp!r} (Grafana) read that one; left as it is",
            )
        elif mapping.get("bucketID") != bucket_id:
            report.add(
                step,
                "failed",
                f"{db}/{rp} is mapped to another bucket ({mapping.get('bucketID')}), not"
                f" {settings.bucket!r} ({bucket_id}); InfluxQL would read that one. Fix it by"
                " hand (influx v1 dbrp update/delete); this command changes nothing it did"
                " not make",
            )
        else:
            report.add(step, "ok", f"{db}/{rp} -> bucket {settings.bucket!r}")
        return
    if not create:
        report.add(step, "missing", f"no mapping {db}/{rp} (--check: not created)")
        return
    default = primary and not any(m.get("default") for m in mappings)
    status, data, _ = api.call(
        "POST",
        "/api/v2/dbrps",
        body={
            "orgID": org_id,
            "bucketID": bucket_id,
            "database": db,
            "retention_policy": rp,
            "default": default,
        },
    )
    if _denied(status):
        report.add(
            step,
            "refused",
            f"the token may not create DBRP mappings; an admin runs: influx v1 dbrp create"
            f" --org {settings.org} --db {db} --rp {rp} --bucket-id {bucket_id}"
            + (" --default" if primary else ""),
        )
        return
    if status >= 300:
        report.add(step, "failed", f"creating {db}/{rp} answered {status}: {_message(data)}")
        return
    note = "" if default or not primary else f" (not the default of {db}: another mapping is)"
    report.add(step, "created", f"{db}/{rp} -> bucket {settings.bucket!r}{note}")


def _setup_v3(api: _Api, settings: InfluxSettings, report: SetupReport, create: bool) -> None:
    db = settings.database
    status, data, _ = api.call("GET", "/api/v3/configure/database", params={"format": "json"})
    if _denied(status):
        report.add("database", "refused", f"{status}: the token may not list databases")
        return
    if status == 404:
        report.add("database", "skipped", "no database API here: created by the first write")
        return
    if status >= 300:
        report.add("database", "failed", f"listing databases answered {status}: {_message(data)}")
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
    elif _denied(status):
        report.add(
            "database",
            "refused",
            f"the token may not create databases; an admin runs: influxdb3 create database {db}"
            " (or let the gateway's first write create it)",
        )
    elif status >= 300:
        report.add("database", "failed", f"creating {db!r} answered {status}: {_message(data)}")
    else:
        report.add("database", "created", f"database {db!r} created")


def _check_influxql(api: _Api, settings: InfluxSettings, report: SetupReport) -> None:
    if not report.ok:
        return
    db = settings.database
    status, data, _ = api.call(
        "GET", "/query", params={"db": db, "q": f"SHOW MEASUREMENTS ON {quote_ident(db)}"}
    )
    error = _influxql_error(data)
    if _denied(status):
        report.add("influxql", "refused", f"{status}: the token may not query {db!r}")
    elif status >= 300 or error:
        report.add(
            "influxql",
            "failed",
            f"InfluxQL on {db!r} answered {status}: {error or _message(data)}",
        )
    else:
        report.add("influxql", "ok", f"InfluxQL reads {db!r} (/query)")
