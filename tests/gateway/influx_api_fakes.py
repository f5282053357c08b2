"""In-memory stand-ins for the management APIs of InfluxDB 2.x and 3.x (setup tests only),
and for the meta statements of a 1.x user without admin rights.

No InfluxDB 2.x or 3.x server is installable from the package registries this project
uses (docs/influxdb.md says which were checked), so ``sensorgate influx setup`` is
tested on these for its 2.x/3.x branches, and on a real influxd 1.x for the v1 branch.
They answer the documented endpoints and shapes only: ``/ping``, ``/api/v2/orgs``,
``/api/v2/buckets``, ``/api/v2/dbrps`` and ``/query`` (2.x);
``/api/v3/configure/database`` and ``/query`` (3.x). The write path is never tested
on them.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import httpx

_ids = itertools.count(0x1000)


def _id() -> str:
    return f"{next(_ids):016x}"


def _json(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


@dataclass
class FakeInflux2:
    """Orgs, buckets and DBRP mappings behind a token with chosen permissions."""

    token: str = "admin-token"
    can_create_buckets: bool = True
    can_create_dbrps: bool = True
    orgs: dict[str, str] = field(default_factory=lambda: {"acme": _id()})
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    dbrps: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, params = request.url.path, request.url.params
        self.requests.append((request.method, path))
        if path == "/ping":
            return httpx.Response(204, headers={"X-Influxdb-Version": "v2.7.11"})
        if request.headers.get("Authorization") != f"Token {self.token}":
            return _json(401, {"code": "unauthorized", "message": "unauthorized access"})
        if path == "/api/v2/orgs":
            orgs = [{"id": i, "name": n} for n, i in self.orgs.items()]
            if "org" in params:
                orgs = [o for o in orgs if o["name"] == params["org"]]
                if not orgs:
                    return _json(404, {"code": "not found", "message": "organization not found"})
            return _json(200, {"orgs": orgs})
        if path == "/api/v2/buckets" and request.method == "GET":
            found = [
                b
                for b in self.buckets.values()
                if b["orgID"] == params["orgID"] and b["name"] == params.get("name", b["name"])
            ]
            return _json(200, {"buckets": found})
        if path == "/api/v2/buckets" and request.method == "POST":
            if not self.can_create_buckets:
                return _json(403, {"code": "forbidden", "message": "write:buckets is required"})
            body = json.loads(request.content)
            bucket = {"id": _id(), "orgID": body["orgID"], "name": body["name"]}
            self.buckets[bucket["id"]] = bucket
            return _json(201, bucket)
        if path == "/api/v2/dbrps" and request.method == "GET":
            found = [
                d
                for d in self.dbrps
                if d["orgID"] == params["orgID"] and d["database"] == params.get("db")
            ]
            return _json(200, {"content": found})
        if path == "/api/v2/dbrps" and request.method == "POST":
            if not self.can_create_dbrps:
                return _json(403, {"code": "forbidden", "message": "write:dbrp is required"})
            body = json.loads(request.content)
            mapping = {"id": _id(), **body}
            self.dbrps.append(mapping)
            return _json(201, {"content": mapping})
        if path == "/query":
            mapped = any(d["database"] == params.get("db") for d in self.dbrps)
            if not mapped:
                return _json(404, {"code": "not found", "message": "database not found"})
            return _json(200, {"results": [{"statement_id": 0}]})
        return _json(404, {"code": "not found", "message": f"path not found: {path}"})


@dataclass
class FakeInflux3:
    """Databases of InfluxDB 3 Core behind a token."""

    token: str = "apiv3_token"
    can_create: bool = True
    databases: set[str] = field(default_factory=lambda: {"_internal"})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _json(401, {"error": "the request was not authenticated"})
        if path == "/ping":
            return httpx.Response(
                200,
                json={"version": "3.5.0"},
                headers={"X-Influxdb-Version": "3.5.0", "X-Influxdb-Build": "Core"},
            )
        if path == "/api/v3/configure/database" and request.method == "GET":
            return _json(200, [{"iox::database": db} for db in sorted(self.databases)])
        if path == "/api/v3/configure/database" and request.method == "POST":
            if not self.can_create:
                return _json(403, {"error": "forbidden"})
            db = json.loads(request.content)["db"]
            if db in self.databases:
                return _json(409, {"error": "attempted to create a resource that already exists"})
            self.databases.add(db)
            return httpx.Response(200)
        if path == "/query":
            if request.url.params.get("db") not in self.databases:
                return _json(404, {"error": "database not found"})
            return _json(200, {"results": [{"statement_id": 0}]})
        return _json(404, {"error": f"not found: {path}"})


@dataclass
class FakeInflux1:
    """InfluxDB 1.x's meta statements for a user who may or may not administer it.

    The real server answers the v1 branch in tests/integration; this one stands in for
    what the session's influxd (no authentication) cannot show: a user without the
    admin privilege that retention policies need.
    """

    admin: bool = True
    databases: set[str] = field(default_factory=set)
    policies: dict[str, list[Any]] = field(default_factory=dict)
    """name -> [name, duration, shardGroupDuration, replicaN, default] of one database."""
    statements: list[str] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/ping":
            return httpx.Response(204, headers={"X-Influxdb-Version": "1.6.7~rc0"})
        if path != "/query":
            return _json(404, {"error": f"not found: {path}"})
        q = request.url.params["q"]
        self.statements.append(q)
        if q == "SHOW DATABASES":
            values = [[db] for db in sorted(self.databases)]
            series = [{"name": "databases", "columns": ["name"], "values": values}]
            return _json(200, {"results": [{"statement_id": 0, "series": series}]})
        if q.startswith("SHOW RETENTION POLICIES"):
            columns = ["name", "duration", "shardGroupDuration", "replicaN", "default"]
            series = [{"columns": columns, "values": list(self.policies.values())}]
            return _json(200, {"results": [{"statement_id": 0, "series": series}]})
        if q.startswith("SHOW"):
            return _json(200, {"results": [{"statement_id": 0}]})
        if not self.admin:
            return _json(
                403,
                {
                    "error": "error authorizing query: sg not authorized to execute statement"
                    f" '{q}', requires admin privilege"
                },
            )
        if q.startswith("CREATE DATABASE"):
            self.databases.add(q.split('"')[1])
        elif q.startswith("CREATE RETENTION POLICY"):
            name = q.split('"')[1]
            self.policies[name] = [name, "720h0m0s", "24h0m0s", 1, q.endswith("DEFAULT")]
        return _json(200, {"results": [{"statement_id": 0}]})
