"""Write line protocol to InfluxDB, over the v1 HTTP API, the v2 API or the v3 API.

:class:`V1Writer` posts to ``/write?db=`` (InfluxDB 1.x, and 2.x/3.x compatibility
endpoints with a token); :class:`~gateway.influx.writer_v2.V2Writer` goes through
``influxdb-client`` (token, org, bucket); :class:`V3Writer` posts to InfluxDB 3's
``/api/v3/write_lp?db=``. All split their input into batches, gzip the body
(``InfluxSettings.use_gzip``: by default not on a loopback host, where compressing costs
more CPU than it saves), and retry server errors (5xx), throttling (429, honouring
``Retry-After``) and connection errors with exponential backoff and jitter, for at most
``retry_max_s``. A 4xx for bad data (400, 413, 422) is not retried: it raises
:class:`BadPointsError` with the server's message, so that the caller can isolate the
offending points. Other 4xx (401, 403, 404) blame the configuration, not the data: they
raise a plain :class:`~contract.errors.StorageError` at once. Every other failure
surfaces as
:class:`~contract.errors.StorageError`; vendor exceptions do not leak past this module.

Retention policy: a writer is built for one target policy (``policy``, from
:class:`~gateway.influx.layout.StorageLayout`; None: the database's default).
:class:`V1Writer` sends it as ``rp=``; the v2 writer and :class:`V3Writer` ignore
it: they write to one bucket or database, whose own retention period applies
(docs/influxdb.md).

Timestamps: :meth:`~BatchingWriter.write` and :meth:`~BatchingWriter.write_batch`
take lines in nanoseconds (what :mod:`gateway.influx.lineprotocol` renders);
:meth:`~BatchingWriter.write_body` posts a ready body in the precision it is given
(``u`` for :class:`~gateway.influx.encoder.LineProtocolEncoder` bodies).

The counters are updated under a lock: the pipelined writer posts from several
threads through one writer.

The gateway does not use these writers bare: :mod:`gateway.influx.pipeline` wraps one
with pipelining, a short retry window, an on-disk spill for outages and bad-point
isolation (:mod:`gateway.influx.resilient` is its synchronous form).
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, Protocol

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from contract.errors import StorageError
from gateway.settings import InfluxSettings

if TYPE_CHECKING:
    from gateway.influx.writer_v2 import V2Writer

__all__ = [
    "PRECISIONS",
    "BadPointsError",
    "BatchWriter",
    "BatchingWriter",
    "PointWriter",
    "Precision",
    "TransientError",
    "V1Writer",
    "V3Writer",
    "make_writer",
    "raise_for_status",
]

log = logging.getLogger(__name__)

Precision = Literal["ns", "u", "ms", "s"]
"""Timestamp precision of a body, as the v1 API spells it (``u``: microseconds)."""
PRECISIONS: dict[str, Precision] = {"ns": "ns", "u": "u", "ms": "ms", "s": "s"}
"""A precision read back as text (the spill's header) -> the typed precision."""


class BadPointsError(StorageError):
    """InfluxDB refused the data itself (HTTP 4xx); retrying cannot help."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class PointWriter(Protocol):
    """Writes lines of line protocol; returns once InfluxDB has them (or raises)."""

    def write(self, lines: Sequence[str]) -> None:
        """Write ``lines``, batching as configured."""

    def close(self) -> None:
        """Release connections."""


class BatchWriter(PointWriter, Protocol):
    """A :class:`PointWriter` that can also write one batch with a chosen retry window.

    :class:`V1Writer` and the v2 writer are batch writers; the resilient writer
    wraps one.
    """

    points_written: int
    write_errors: int
    retries: int

    def write_batch(self, batch: Sequence[str], *, retry_for: float | None = None) -> None:
        """Write ``batch`` in one request, retrying transient failures for ``retry_for`` s."""

    def write_body(
        self,
        body: bytes,
        lines: int,
        *,
        precision: Precision = "ns",
        retry_for: float | None = None,
    ) -> None:
        """Post ``body`` (``lines`` newline-terminated lines) in one request, with retries."""


class TransientError(StorageError):
    """A failure worth retrying (5xx, 429, connection)."""


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientError)


def _wait(base: wait_exponential_jitter) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, StorageError) and exc.retry_after is not None:
            return exc.retry_after
        return float(base(state))

    return wait


class BatchingWriter:
    """Splits writes into batches and retries each batch on its own.

    The counters are read by :class:`~gateway.influx.resilient.ResilientWriter` and the
    metrics endpoint; only one thread posts at a time, so plain integers suffice.
    """

    def __init__(self, settings: InfluxSettings, *, policy: str | None = None) -> None:
        self.settings = settings
        self.policy = policy
        """The retention policy written to (None: the database's default)."""
        self.points_written = 0
        self.write_errors = 0
        """Failed requests, whatever the cause (each retry that fails counts)."""
        self.retries = 0
        self._counts = threading.Lock()

    def write(self, lines: Sequence[str]) -> None:
        """Write ``lines`` in batches of ``batch_size``; each batch retried on its own."""
        size = self.settings.batch_size
        for start in range(0, len(lines), size):
            self.write_batch(lines[start : start + size])

    def write_batch(self, batch: Sequence[str], *, retry_for: float | None = None) -> None:
        """Write ``batch`` (lines, ns timestamps) in one request, with retries.

        See :meth:`write_body`.
        """
        body = ("\n".join(batch) + "\n").encode("utf-8")
        self.write_body(body, len(batch), precision="ns", retry_for=retry_for)

    def write_body(
        self,
        body: bytes,
        lines: int,
        *,
        precision: Precision = "ns",
        retry_for: float | None = None,
    ) -> None:
        """Post ``body`` (``lines`` newline-terminated lines) in one request, with retries.

        Transient failures are retried for ``retry_for`` seconds (default
        ``retry_max_s``; ``0`` makes a single attempt). Raises :class:`BadPointsError`
        at once for a 4xx that blames the data, :class:`StorageError` once the retries
        are spent or for a 4xx that blames the configuration. Safe to call from several
        threads at once.
        """
        window = self.settings.retry_max_s if retry_for is None else retry_for
        retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            wait=_wait(wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.5)),
            stop=stop_after_delay(window),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            retrying(self._attempt, body, precision)
        except TransientError as exc:
            raise StorageError(
                f"InfluxDB at {self.settings.url} still failing after"
                f" {window:.1f} s of retries: {exc}",
                retry_after=exc.retry_after,
            ) from None
        with self._counts:
            self.points_written += lines

    def _attempt(self, body: bytes, precision: Precision) -> None:
        try:
            self._post(body, precision)
        except StorageError:
            with self._counts:
                self.write_errors += 1
            raise

    def _before_sleep(self, state: RetryCallState) -> None:
        with self._counts:
            self.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.warning("InfluxDB write failed (attempt %d), retrying: %s", state.attempt_number, exc)

    def _post(self, body: bytes, precision: Precision) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class _HttpWriter(BatchingWriter):
    """A writer that posts line protocol itself, over one ``httpx`` connection pool.

    Credentials: ``username``/``password`` as HTTP Basic (InfluxDB 1.x with auth), or
    ``token`` in an ``Authorization`` header (InfluxDB 2.x and 3.x; the scheme is the
    subclass's).
    """

    _token_scheme = "Token"

    def __init__(
        self,
        settings: InfluxSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        policy: str | None = None,
    ) -> None:
        super().__init__(settings, policy=policy)
        auth = None
        headers = {}
        if settings.token is not None:
            headers["Authorization"] = f"{self._token_scheme} {settings.token.get_secret_value()}"
        elif settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else ""
            auth = httpx.BasicAuth(settings.username, password)
        # ``transport`` is the seam that lets tests answer without a network.
        self._http = httpx.Client(
            base_url=settings.url,
            auth=auth,
            headers=headers,
            timeout=settings.timeout_s,
            transport=transport,
            verify=settings.verify(),
        )
        self._gzip = settings.use_gzip

    def _send(self, path: str, params: dict[str, str], body: bytes) -> None:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self._gzip:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        try:
            resp = self._http.post(path, params=params, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientError(f"cannot reach InfluxDB at {self.settings.url}: {exc}") from exc
        raise_for_status(resp.status_code, resp.text, resp.headers.get("Retry-After"))

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()


class V1Writer(_HttpWriter):
    """Writes over InfluxDB's v1 HTTP API (``/write?db=&precision=``, ``&rp=`` with a policy).

    The ``precision`` of each request is the one given to :meth:`write_body`: ``ns``
    for :meth:`write`/:meth:`write_batch`, ``u`` for the encoder's bodies. With a
    ``token`` it talks to the v1 compatibility API of InfluxDB 2.x (``database`` must
    be mapped to a bucket: ``sensorgate influx setup``) or 3.x.
    """

    def ensure_database(self) -> None:
        """Create the database if it does not exist (idempotent; InfluxDB 1.x).

        With a ``token`` the server is InfluxDB 2.x or 3.x, where ``CREATE DATABASE``
        does not exist: 2.x needs a bucket and a DBRP mapping (``sensorgate influx
        setup``), 3.x creates the database on the first write. Nothing is done then.
        """
        if self.settings.token is not None:
            return
        try:
            resp = self._http.post(
                "/query", params={"q": f'CREATE DATABASE "{self.settings.database}"'}
            )
        except httpx.HTTPError as exc:
            raise StorageError(f"cannot reach InfluxDB at {self.settings.url}: {exc}") from exc
        if resp.status_code >= 400 or "error" in resp.text:
            raise StorageError(
                f"cannot create database {self.settings.database!r}: {resp.status_code} {resp.text}"
            )

    def _post(self, body: bytes, precision: Precision) -> None:
        params = {"db": self.settings.database, "precision": precision}
        if self.policy is not None:
            params["rp"] = self.policy
        self._send("/write", params, body)


_V3_PRECISION = {"ns": "nanosecond", "u": "microsecond", "ms": "millisecond", "s": "second"}


class V3Writer(_HttpWriter):
    """Writes over InfluxDB 3's own API (``/api/v3/write_lp?db=&precision=``).

    InfluxDB 3 Core and Enterprise create ``database`` on its first write. A request
    with some bad lines stores the good ones and answers 400 naming the bad ones
    (``accept_partial``, the server's default), as influxd 1.x does, so the pipelined
    writer's bisection works unchanged. The token is sent as ``Bearer``.
    """

    _token_scheme = "Bearer"

    def _post(self, body: bytes, precision: Precision) -> None:
        params = {"db": self.settings.database, "precision": _V3_PRECISION[precision]}
        self._send("/api/v3/write_lp", params, body)


_BAD_DATA = frozenset({400, 413, 422})
"""Statuses that blame the points: unparsable, too large, type conflict, out of retention."""


def raise_for_status(status: int, text: str, retry_after: str | None) -> None:
    """Raise the writers' error for an HTTP status: retried, bad data, or configuration."""
    if status < 300:
        return
    message = f"InfluxDB answered {status}: {text.strip()[:500]}"
    if status == 429 or status >= 500:
        raise TransientError(message, retry_after=_retry_after(retry_after))
    if status in _BAD_DATA:
        raise BadPointsError(message, status=status)
    # 401, 403, 404 (no such database)...: not the data's fault, so its points must not
    # become dead letters; the caller keeps them (the resilient writer spills them).
    raise StorageError(message)


def make_writer(
    settings: InfluxSettings, *, policy: str | None = None
) -> V1Writer | V2Writer | V3Writer:
    """Return the writer for the configured API (``v1``, ``v2`` or ``v3``) to ``policy``."""
    if settings.api == "v2":
        from gateway.influx.writer_v2 import V2Writer

        return V2Writer(settings, policy=policy)
    if settings.api == "v3":
        return V3Writer(settings, policy=policy)
    return V1Writer(settings, policy=policy)
