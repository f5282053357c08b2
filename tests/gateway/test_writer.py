import gzip
import hashlib

import httpx
import pytest

from contract.errors import StorageError
from gateway.influx.writer import BadPointsError, V1Writer
from gateway.settings import InfluxSettings


def _writer(handler, **settings) -> V1Writer:  # type: ignore[no-untyped-def]
    cfg = InfluxSettings(
        **{"url": "http://influx.invalid", "database": "db", "retry_max_s": 5, **settings}
    )
    return V1Writer(cfg, transport=httpx.MockTransport(handler))


def test_batches_are_split_and_gzipped() -> None:
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["db"] == "db"
        assert request.url.params["precision"] == "ns"
        assert request.headers["Content-Encoding"] == "gzip"
        bodies.append(gzip.decompress(request.content))
        return httpx.Response(204)

    _writer(handler, batch_size=2).write([f"m v={i} {i}" for i in range(5)])
    assert [b.decode().splitlines() for b in bodies] == [
        ["m v=0 0", "m v=1 1"],
        ["m v=2 2", "m v=3 3"],
        ["m v=4 4"],
    ]


def test_server_errors_and_throttling_are_retried() -> None:
    answers = iter(
        [
            httpx.Response(500, text="engine: error syncing wal"),
            httpx.Response(429, headers={"Retry-After": "0"}),
            httpx.Response(204),
        ]
    )
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return next(answers)

    writer = _writer(handler)
    writer.write(["m v=1 1"])
    assert len(calls) == 3
    assert writer.retries == 2


def test_connection_errors_are_retried() -> None:
    attempts = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(204)

    _writer(handler).write(["m v=1 1"])
    assert len(attempts) == 3


def test_bad_data_is_not_retried() -> None:
    attempts = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        return httpx.Response(400, text='{"error":"unable to parse"}')

    with pytest.raises(BadPointsError, match="unable to parse") as info:
        _writer(handler).write(["m v= 1"])
    assert info.value.status == 400
    assert len(attempts) == 1


def test_gives_up_after_retry_max_with_a_storage_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": "0.2"})

    with pytest.raises(StorageError, match="still failing after") as info:
        _writer(handler, retry_max_s=0.5).write(["m v=1 1"])
    assert not isinstance(info.value, BadPointsError)


def test_missing_database_or_auth_is_not_blamed_on_the_data() -> None:
    for status in (401, 403, 404):

        def handler(request: httpx.Request, status: int = status) -> httpx.Response:
            return httpx.Response(status, text="database not found")

        with pytest.raises(StorageError, match=str(status)) as info:
            _writer(handler).write(["m v=1 1"])
        assert not isinstance(info.value, BadPointsError)


def test_oversized_and_unprocessable_are_bad_data() -> None:
    for status in (413, 422):

        def handler(request: httpx.Request, status: int = status) -> httpx.Response:
            return httpx.Response(status)

        with pytest.raises(BadPointsError):
            _writer(handler).write(["m v=1 1"])


def test_write_batch_with_no_retry_window_makes_one_attempt_and_counts() -> None:
    attempts = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        return httpx.Response(503)

    writer = _writer(handler)
    with pytest.raises(StorageError, match="still failing"):
        writer.write_batch(["m v=1 1"], retry_for=0)
    assert len(attempts) == 1
    assert (writer.write_errors, writer.retries, writer.points_written) == (1, 0, 0)


def test_write_body_posts_bytes_in_the_given_precision() -> None:
    seen: list[tuple[str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.params["precision"], gzip.decompress(request.content)))
        return httpx.Response(204)

    writer = _writer(handler)
    writer.write_body(b"m v=1 1\nm v=2 2\n", 2, precision="u")
    writer.write(["m v=3 3"])
    assert seen == [("u", b"m v=1 1\nm v=2 2\n"), ("ns", b"m v=3 3\n")]
    assert writer.points_written == 3


def test_gzip_is_automatic_off_on_loopback_and_may_be_forced() -> None:
    assert InfluxSettings(url="http://127.0.0.1:8086").use_gzip is False
    assert InfluxSettings(url="http://localhost:8086").use_gzip is False
    assert InfluxSettings(url="http://[::1]:8086").use_gzip is False
    assert InfluxSettings(url="http://influx.example:8086").use_gzip is True
    assert InfluxSettings(url="http://10.1.2.3:8086").use_gzip is True
    assert InfluxSettings(url="http://127.0.0.1:8086", gzip=True).use_gzip is True
    assert InfluxSettings(url="http://influx.example:8086", gzip=False).use_gzip is False

    encodings: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        encodings.append(request.headers.get("Content-Encoding"))
        return httpx.Response(204)

    for url in ("http://127.0.0.1:1", "http://influx.invalid"):
        cfg = InfluxSettings(url=url, database="db")
        V1Writer(cfg, transport=httpx.MockTransport(handler)).write(["m v=1 1"])
    assert encodings == [None, "gzip"]


def test_a_writer_to_a_retention_policy_names_it_on_every_write() -> None:
    from gateway.influx.spillway import spill_key
    from gateway.influx.writer import V3Writer

    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        return httpx.Response(204)

    cfg = InfluxSettings(url="http://influx.invalid", database="db")
    V1Writer(cfg, transport=httpx.MockTransport(handler), policy="aggregates").write(["m v=1 1"])
    V1Writer(cfg, transport=httpx.MockTransport(handler)).write(["m v=1 1"])
    v3 = InfluxSettings(url="http://influx.invalid", database="db", api="v3", token="t")
    V3Writer(v3, transport=httpx.MockTransport(handler), policy="aggregates").write(["m v=1 1"])
    assert seen == [
        {"db": "db", "precision": "ns", "rp": "aggregates"},
        {"db": "db", "precision": "ns"},  # the database's default policy
        {"db": "db", "precision": "nanosecond"},  # v3: one database, no policies
    ]
    # Spills never mix policies; without one, the key is the one of older versions.
    keys = {spill_key(cfg, p) for p in (None, "raw", "aggregates", "deadletters")}
    assert len(keys) == 4
    older = hashlib.sha256(b"v1|http://influx.invalid|db||").hexdigest()[:16]
    assert spill_key(cfg) == f"spill-{older}"
