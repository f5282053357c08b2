"""The InfluxDB 3 write path (``/api/v3/write_lp``) and token auth on the v1 path.

No InfluxDB 3 server is installable here (docs/influxdb.md), so the request the v3
writer makes is checked against the documented API on the writers' transport seam;
the v1 path with a token runs against a real influxd in
tests/integration/test_influx_setup_influxd.py.
"""

from __future__ import annotations

import gzip

import httpx
import pytest

from contract.errors import StorageError
from gateway.influx.pipeline import PipelinedWriter
from gateway.influx.query import InfluxQL
from gateway.influx.writer import BadPointsError, V1Writer, V3Writer, make_writer
from gateway.settings import InfluxSettings


def _v3(**over: object) -> InfluxSettings:
    base: dict[str, object] = {
        "url": "http://influx3.invalid:8181",
        "api": "v3",
        "token": "apiv3_secret",
        "database": "plant",
        "retry_max_s": 5,
    }
    return InfluxSettings(**{**base, **over})


@pytest.mark.parametrize(
    ("precision", "expected"),
    [("ns", "nanosecond"), ("u", "microsecond"), ("ms", "millisecond"), ("s", "second")],
)
def test_v3_posts_write_lp_with_the_long_precision_names(precision: str, expected: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    writer = V3Writer(_v3(), transport=httpx.MockTransport(handler))
    writer.write_body(b"m v=1 1\n", 1, precision=precision)  # type: ignore[arg-type]
    (request,) = seen
    assert request.method == "POST"
    assert request.url.path == "/api/v3/write_lp"
    assert dict(request.url.params) == {"db": "plant", "precision": expected}
    assert request.headers["Authorization"] == "Bearer apiv3_secret"
    assert gzip.decompress(request.content) == b"m v=1 1\n"  # not a loopback host: gzipped
    assert writer.points_written == 1


def test_make_writer_picks_v3() -> None:
    assert isinstance(make_writer(_v3()), V3Writer)


def test_v3_partial_write_refusal_is_bad_points_and_outage_is_retried() -> None:
    answers = iter(
        [
            httpx.Response(503, text="service unavailable"),
            httpx.Response(
                400,
                json={
                    "error": "partial write of line protocol occurred",
                    "data": [{"original_line": "bad", "line_number": 2, "error_message": "x"}],
                },
            ),
        ]
    )
    writer = V3Writer(_v3(), transport=httpx.MockTransport(lambda _r: next(answers)))
    with pytest.raises(BadPointsError, match="partial write") as caught:
        writer.write(["m v=1 1", "bad"])
    assert caught.value.status == 400
    assert writer.retries == 1


def test_v3_bad_token_blames_the_configuration_not_the_data() -> None:
    writer = V3Writer(
        _v3(), transport=httpx.MockTransport(lambda _r: httpx.Response(401, text="unauthorized"))
    )
    with pytest.raises(StorageError) as caught:
        writer.write(["m v=1 1"])
    assert not isinstance(caught.value, BadPointsError)


def test_the_pipelined_writer_isolates_bad_lines_through_v3() -> None:
    stored: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        lines = request.content.splitlines()
        good = [line for line in lines if not line.startswith(b"bad")]
        stored.extend(good)  # accept_partial: the good lines are kept
        if len(good) != len(lines):
            return httpx.Response(400, json={"error": "partial write of line protocol occurred"})
        return httpx.Response(204)

    settings = _v3(url="http://127.0.0.1:1", spill_enabled=False)
    rejected: list[str] = []
    writer = PipelinedWriter(
        V3Writer(settings, transport=httpx.MockTransport(handler)),
        None,
        settings=settings,
        on_rejected=lambda line, _error: rejected.append(line),
    )
    try:
        writer.submit(b"m v=1 1\nbad line\nm v=2 2\n", 3)
        writer.flush(timeout=30)
    finally:
        writer.close()
    assert rejected == ["bad line"]
    assert set(stored) == {b"m v=1 1", b"m v=2 2"}


def test_v1_with_a_token_sends_it_instead_of_basic_auth() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    settings = InfluxSettings(
        url="http://127.0.0.1:1", database="db", token="t0k", username="u", password="p"
    )
    V1Writer(settings, transport=httpx.MockTransport(handler)).write(["m v=1 1"])
    assert seen[0].headers["Authorization"] == "Token t0k"
    assert seen[0].url.path == "/write"


def test_v1_ensure_database_does_nothing_with_a_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request expected, got {request.url}")

    settings = InfluxSettings(url="http://127.0.0.1:1", database="db", token="t0k")
    V1Writer(settings, transport=httpx.MockTransport(handler)).ensure_database()


def test_influxql_auth_scheme_follows_the_api() -> None:
    v3 = InfluxQL(_v3())
    v2 = InfluxQL(InfluxSettings(api="v2", token="t", org="o", bucket="b"))
    try:
        assert v3._http.headers["Authorization"] == "Bearer apiv3_secret"
        assert v2._http.headers["Authorization"] == "Token t"
    finally:
        v3.close()
        v2.close()
