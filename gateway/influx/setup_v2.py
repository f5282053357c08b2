"""InfluxDB 2.x setup: the organization, the bucket, and the DBRP mappings to it.

The DBRP mapping ``database``/``dbrp_retention_policy`` -> ``bucket`` (the default one
of ``database``) lets InfluxQL reads (``sensorgate query``, the dashboard, Grafana)
find what the v2 API wrote; one mapping per retention policy name of
``influx.retention`` to the same bucket serves reads naming the policies. A mapping of
``database`` to another bucket is reported, never replaced.
"""

from __future__ import annotations

from typing import Any

from gateway.influx.setup_steps import READY, SetupApi, SetupReport, denied, message
from gateway.settings import InfluxSettings

__all__ = ["setup_v2"]


def setup_v2(api: SetupApi, settings: InfluxSettings, report: SetupReport, create: bool) -> None:
    """Find the org, make the bucket and the DBRP mappings (with ``create``)."""
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


def _find_org(api: SetupApi, settings: InfluxSettings, report: SetupReport) -> str | None:
    org = settings.org or ""
    status, data, _ = api.call("GET", "/api/v2/orgs", params={"org": org})
    if denied(status):
        report.add("org", "refused", f"{status}: the token may not read organization {org!r}")
        return None
    orgs = data.get("orgs", []) if isinstance(data, dict) and status < 300 else []
    found = next((o for o in orgs if o.get("name") == org), None)
    if found is None:
        report.add(
            "org", "failed", f"no organization {org!r} visible to this token ({message(data)})"
        )
        return None
    report.add("org", "ok", f"organization {org!r} ({found['id']})")
    return str(found["id"])


def _ensure_bucket(
    api: SetupApi, settings: InfluxSettings, report: SetupReport, org_id: str, create: bool
) -> str | None:
    bucket = settings.bucket or ""
    status, data, _ = api.call("GET", "/api/v2/buckets", params={"orgID": org_id, "name": bucket})
    if denied(status):
        report.add("bucket", "refused", f"{status}: the token may not read bucket {bucket!r}")
        return None
    buckets = data.get("buckets", []) if isinstance(data, dict) and status < 300 else []
    found = next((b for b in buckets if b.get("name") == bucket), None)
    if found is not None:
        report.add("bucket", "ok", f"bucket {bucket!r} exists ({found['id']})")
        return str(found["id"])
    if status >= 300 and status != 404:
        report.add("bucket", "failed", f"listing buckets answered {status}: {message(data)}")
        return None
    if not create:
        report.add("bucket", "missing", f"bucket {bucket!r} missing (--check: not created)")
        return None
    status, data, _ = api.call(
        "POST", "/api/v2/buckets", body={"orgID": org_id, "name": bucket, "retentionRules": []}
    )
    if denied(status):
        report.add(
            "bucket",
            "refused",
            f"the token may not create buckets; an admin runs: influx bucket create"
            f" --org {settings.org} --name {bucket}",
        )
        return None
    if status >= 300:
        report.add("bucket", "failed", f"creating {bucket!r} answered {status}: {message(data)}")
        return None
    report.add("bucket", "created", f"bucket {bucket!r} created ({data['id']}), no expiry")
    return str(data["id"])


def _ensure_dbrps(
    api: SetupApi,
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
    api: SetupApi,
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
    if denied(status):
        report.add(step, "refused", f"{status}: the token may not read DBRP mappings")
        return
    if status >= 300:
        report.add(step, "failed", f"listing DBRP mappings answered {status}: {message(data)}")
        return
    mappings: list[dict[str, Any]] = data.get("content", []) if isinstance(data, dict) else []
    same = [m for m in mappings if m.get("database") == db and m.get("retention_policy") == rp]
    if same:
        _judge_mapping(settings, report, step, same[0], bucket_id, primary=primary, rp=rp)
    elif not create:
        report.add(step, "missing", f"no mapping {db}/{rp} (--check: not created)")
    else:
        default = primary and not any(m.get("default") for m in mappings)
        _create_dbrp(api, settings, report, step, org_id, bucket_id, rp=rp, default=default)


def _judge_mapping(
    settings: InfluxSettings,
    report: SetupReport,
    step: str,
    mapping: dict[str, Any],
    bucket_id: str,
    *,
    primary: bool,
    rp: str,
) -> None:
    """Report an existing mapping of ``database``/``rp``: ours, or another bucket's."""
    db = settings.database
    if mapping.get("bucketID") == bucket_id:
        report.add(step, "ok", f"{db}/{rp} -> bucket {settings.bucket!r}")
    elif not primary:
        report.add(
            step,
            "skipped",
            f"{db}/{rp} is mapped to another bucket ({mapping.get('bucketID')}): reads"
            f" naming the policy {rp!r} (Grafana) read that one; left as it is",
        )
    else:
        report.add(
            step,
            "failed",
            f"{db}/{rp} is mapped to another bucket ({mapping.get('bucketID')}), not"
            f" {settings.bucket!r} ({bucket_id}); InfluxQL would read that one. Fix it by"
            " hand (influx v1 dbrp update/delete); this command changes nothing it did"
            " not make",
        )


def _create_dbrp(
    api: SetupApi,
    settings: InfluxSettings,
    report: SetupReport,
    step: str,
    org_id: str,
    bucket_id: str,
    *,
    rp: str,
    default: bool,
) -> None:
    """Create the mapping ``database``/``rp`` -> the bucket (``default`` of the database)."""
    db = settings.database
    primary = step == "dbrp"
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
    if denied(status):
        report.add(
            step,
            "refused",
            f"the token may not create DBRP mappings; an admin runs: influx v1 dbrp create"
            f" --org {settings.org} --db {db} --rp {rp} --bucket-id {bucket_id}"
            + (" --default" if primary else ""),
        )
        return
    if status >= 300:
        report.add(step, "failed", f"creating {db}/{rp} answered {status}: {message(data)}")
        return
    note = "" if default or not primary else f" (not the default of {db}: another mapping is)"
    report.add(step, "created", f"{db}/{rp} -> bucket {settings.bucket!r}{note}")
