"""``sensorgate influx setup`` on the 2.x and 3.x management APIs (stand-ins, see the fakes).

The v1 branch runs against a real influxd in tests/integration/test_influx_setup_influxd.py.
"""

from __future__ import annotations

import json

import httpx
import pytest

from contract.errors import ConfigError
from gateway.app import prepare_storage
from gateway.influx.setup import setup_influx
from gateway.settings import GatewaySettings, InfluxSettings
from tests.gateway.influx_api_fakes import FakeInflux1, FakeInflux2, FakeInflux3


def _v2(**over: object) -> InfluxSettings:
    base: dict[str, object] = {
        "url": "http://influx2.invalid:8086",
        "api": "v2",
        "token": "admin-token",
        "org": "acme",
        "bucket": "sensors",
        "database": "sensorgate",
    }
    return InfluxSettings(**{**base, **over})


def _statuses(report) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {s.name: s.status for s in report.steps}


def test_v2_creates_bucket_and_default_dbrp_then_is_idempotent() -> None:
    server = FakeInflux2()
    first = setup_influx(_v2(), transport=httpx.MockTransport(server))
    assert first.ok, first.to_text()
    assert _statuses(first) == {
        "ping": "ok",
        "org": "ok",
        "bucket": "created",
        "dbrp": "created",
        # The retention policy names too, so that reads naming them (Grafana) find it.
        "dbrp raw": "created",
        "dbrp aggregates": "created",
        "dbrp deadletters": "created",
        "influxql": "ok",
    }
    assert first.server == "v2.7.11"
    (bucket,) = server.buckets.values()
    mapping, *aliases = server.dbrps
    assert [(a["retention_policy"], a["bucketID"], a["default"]) for a in aliases] == [
        ("raw", bucket["id"], False),
        ("aggregates", bucket["id"], False),
        ("deadletters", bucket["id"], False),
    ]
    assert mapping == {
        "id": mapping["id"],
        "orgID": server.orgs["acme"],
        "bucketID": bucket["id"],
        "database": "sensorgate",
        "retention_policy": "autogen",
        "default": True,
    }

    second = setup_influx(_v2(), transport=httpx.MockTransport(server))
    assert _statuses(second) == {
        "ping": "ok",
        "org": "ok",
        "bucket": "ok",
        "dbrp": "ok",
        "dbrp raw": "ok",
        "dbrp aggregates": "ok",
        "dbrp deadletters": "ok",
        "influxql": "ok",
    }
    assert len(server.buckets) == 1
    assert len(server.dbrps) == 4


def test_v2_check_creates_nothing_and_is_not_ready() -> None:
    server = FakeInflux2()
    report = setup_influx(_v2(), create=False, transport=httpx.MockTransport(server))
    assert not report.ok
    assert _statuses(report)["bucket"] == "missing"
    assert not server.buckets
    assert all(method == "GET" for method, _ in server.requests)


def test_v2_token_without_dbrp_permission_is_refused_with_the_admin_command() -> None:
    server = FakeInflux2(can_create_dbrps=False)
    report = setup_influx(_v2(), transport=httpx.MockTransport(server))
    assert not report.ok
    step = report.steps[-1]
    assert (step.name, step.status) == ("dbrp", "refused")
    (bucket_id,) = server.buckets
    assert "influx v1 dbrp create --org acme --db sensorgate --rp autogen" in step.detail
    assert f"--bucket-id {bucket_id} --default" in step.detail


def test_v2_existing_bucket_with_a_token_that_cannot_create_buckets() -> None:
    server = FakeInflux2(can_create_buckets=False)
    org = server.orgs["acme"]
    server.buckets["b1"] = {"id": "b1", "orgID": org, "name": "sensors"}
    report = setup_influx(_v2(), transport=httpx.MockTransport(server))
    assert report.ok, report.to_text()
    assert _statuses(report)["bucket"] == "ok"
    assert server.dbrps[0]["bucketID"] == "b1"


def test_v2_mapping_to_another_bucket_is_reported_not_replaced() -> None:
    server = FakeInflux2()
    org = server.orgs["acme"]
    server.buckets["b1"] = {"id": "b1", "orgID": org, "name": "sensors"}
    other = {
        "id": "d1",
        "orgID": org,
        "bucketID": "elsewhere",
        "database": "sensorgate",
        "retention_policy": "autogen",
        "default": True,
    }
    server.dbrps.append(dict(other))
    report = setup_influx(_v2(), transport=httpx.MockTransport(server))
    assert not report.ok
    assert _statuses(report)["dbrp"] == "failed"
    assert "another bucket (elsewhere)" in report.steps[-1].detail
    assert server.dbrps == [other]


def test_v2_second_rp_is_mapped_but_not_made_default() -> None:
    server = FakeInflux2()
    setup_influx(_v2(), transport=httpx.MockTransport(server))
    report = setup_influx(
        _v2(bucket="sensors-long", dbrp_retention_policy="long"),
        transport=httpx.MockTransport(server),
    )
    assert report.ok, report.to_text()
    assert [(d["retention_policy"], d["default"]) for d in server.dbrps] == [
        ("autogen", True),
        ("raw", False),
        ("aggregates", False),
        ("deadletters", False),
        ("long", False),
    ]
    # The policy names stay with the first bucket, said so.
    assert _statuses(report)["dbrp raw"] == "skipped"


def test_v2_wrong_token_and_unknown_org() -> None:
    server = FakeInflux2()
    bad = setup_influx(_v2(token="nope"), transport=httpx.MockTransport(server))
    assert _statuses(bad) == {"ping": "ok", "org": "refused"}
    missing = setup_influx(_v2(org="other"), transport=httpx.MockTransport(server))
    assert _statuses(missing) == {"ping": "ok", "org": "failed"}
    assert "no organization 'other'" in missing.steps[-1].detail


def test_v2_needs_token_org_and_bucket() -> None:
    report = setup_influx(
        _v2(token=None, bucket=None), transport=httpx.MockTransport(FakeInflux2())
    )
    assert not report.ok
    assert report.steps[-1].detail == "the v2 API needs token, bucket (influx.*)"


def test_unreachable_server_is_a_failed_step_not_an_exception() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    report = setup_influx(_v2(), transport=httpx.MockTransport(refuse))
    assert _statuses(report) == {"ping": "failed"}
    assert json.loads(report.to_json())["ok"] is False


def _v3(**over: object) -> InfluxSettings:
    base: dict[str, object] = {
        "url": "http://influx3.invalid:8181",
        "api": "v3",
        "token": "apiv3_token",
        "database": "sensorgate",
    }
    return InfluxSettings(**{**base, **over})


def test_v3_creates_the_database_once() -> None:
    server = FakeInflux3()
    first = setup_influx(_v3(), transport=httpx.MockTransport(server))
    assert _statuses(first) == {"ping": "ok", "database": "created", "influxql": "ok"}
    assert first.server == "3.5.0 (Core)"
    second = setup_influx(_v3(), transport=httpx.MockTransport(server))
    assert _statuses(second) == {"ping": "ok", "database": "ok", "influxql": "ok"}


def test_v3_token_that_cannot_create_says_the_first_write_will() -> None:
    report = setup_influx(_v3(), transport=httpx.MockTransport(FakeInflux3(can_create=False)))
    assert _statuses(report)["database"] == "refused"
    assert "influxdb3 create database sensorgate" in report.steps[-1].detail


@pytest.mark.parametrize(("api", "hint"), [("v2", "no v2 write API"), ("v3", "no v3 write API")])
def test_the_ping_says_when_the_api_does_not_fit_the_server(api: str, hint: str) -> None:
    def influxd_1x(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ping":
            return httpx.Response(204, headers={"X-Influxdb-Version": "1.8.10"})
        return httpx.Response(404, text="404 page not found")

    settings = _v2() if api == "v2" else _v3()
    report = setup_influx(settings, transport=httpx.MockTransport(influxd_1x))
    assert hint in report.steps[0].detail
    assert not report.ok


def _v1(**over: object) -> InfluxSettings:
    return InfluxSettings(**{"url": "http://influx1.invalid:8086", "database": "sg", **over})


def test_v1_creates_the_database_and_its_retention_policies() -> None:
    server = FakeInflux1()
    report = setup_influx(_v1(), transport=httpx.MockTransport(server))
    assert report.ok, report.to_text()
    assert _statuses(report) == {
        "ping": "ok",
        "database": "created",
        "retention raw": "created",
        "retention aggregates": "created",
        "retention deadletters": "created",
        "influxql": "ok",
    }
    assert server.statements[3:6] == [
        'CREATE RETENTION POLICY "raw" ON "sg" DURATION 30d REPLICATION 1 DEFAULT',
        'CREATE RETENTION POLICY "aggregates" ON "sg" DURATION 400d REPLICATION 1',
        'CREATE RETENTION POLICY "deadletters" ON "sg" DURATION 14d REPLICATION 1',
    ]


def test_v1_without_admin_rights_names_the_statement_and_the_setting() -> None:
    server = FakeInflux1(admin=False, databases={"sg"})
    report = setup_influx(_v1(), transport=httpx.MockTransport(server))
    assert not report.ok
    step = next(s for s in report.steps if s.name == "retention raw")
    assert step.status == "refused"
    assert 'an admin runs: CREATE RETENTION POLICY "raw" ON "sg" DURATION 30d' in step.detail
    assert "influx.retention.enabled = false" in step.detail

    settings = GatewaySettings(influx=_v1())
    with pytest.raises(ConfigError, match="retention raw: refused") as caught:
        prepare_storage(settings, transport=httpx.MockTransport(server))
    assert caught.value.field == "influx.retention"
    # Once an admin made them, the same user starts: nothing to change.
    for name, duration in (
        ("raw", "720h0m0s"),
        ("aggregates", "9600h0m0s"),
        ("deadletters", "336h0m0s"),
    ):
        server.policies[name] = [name, duration, "24h0m0s", 1, name == "raw"]
    prepare_storage(settings, transport=httpx.MockTransport(server))
    assert not [s for s in server.statements[-3:] if not s.startswith("SHOW")]


def test_v1_with_a_token_names_the_buckets_of_the_policies() -> None:
    report = setup_influx(
        _v1(token="t", retention={"enabled": True}), transport=httpx.MockTransport(FakeInflux1())
    )
    step = next(s for s in report.steps if s.name == "retention")
    assert step.status == "skipped"
    assert "sg/raw, sg/aggregates, sg/deadletters" in step.detail
