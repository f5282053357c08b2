"""``sensorgate influx setup`` on the 2.x and 3.x management APIs (stand-ins, see the fakes).

The v1 branch runs against a real influxd in tests/integration/test_influx_setup_influxd.py.
"""

from __future__ import annotations

import json

import httpx
import pytest

from gateway.influx.setup import setup_influx
from gateway.settings import InfluxSettings
from tests.gateway.influx_api_fakes import FakeInflux2, FakeInflux3


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
        "influxql": "ok",
    }
    assert first.server == "v2.7.11"
    (bucket,) = server.buckets.values()
    (mapping,) = server.dbrps
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
        "influxql": "ok",
    }
    assert len(server.buckets) == 1
    assert len(server.dbrps) == 1


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
        ("long", False),
    ]


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
