"""Write line protocol over InfluxDB's v2 API, through ``influxdb-client``.

:class:`V2Writer` batches and retries as every writer of :mod:`gateway.influx.writer`
does; the client's own exceptions become the same errors (``BadPointsError``,
``StorageError``), so nothing of ``influxdb-client`` leaks past this module. The
client is imported when a v2 writer is made: the v1 and v3 paths never load it.
"""

from __future__ import annotations

from contract.errors import ConfigError
from gateway.influx.writer import BatchingWriter, Precision, TransientError, raise_for_status
from gateway.settings import InfluxSettings

__all__ = ["V2Writer"]

_V2_PRECISION = {"ns": "ns", "u": "us", "ms": "ms", "s": "s"}


class V2Writer(BatchingWriter):
    """Writes over InfluxDB's v2 API through ``influxdb-client`` (token, org, bucket)."""

    def __init__(self, settings: InfluxSettings, *, policy: str | None = None) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        super().__init__(settings, policy=policy)  # ignored: one bucket
        if not (settings.token and settings.org and settings.bucket):
            raise ConfigError("influx", "the v2 API needs token, org and bucket")
        tls = settings.tls
        self._client = InfluxDBClient(
            url=settings.url,
            token=settings.token.get_secret_value(),
            org=settings.org,
            timeout=int(settings.timeout_s * 1000),
            enable_gzip=settings.use_gzip,
            # The context checks the server; the CA file is named too, so that urllib3
            # loads no other trust store into it.
            ssl_context=None if tls is None else tls.ssl_context(),
            ssl_ca_cert=None if tls is None or tls.ca_file is None else str(tls.ca_file),
            verify_ssl=tls is None or not tls.insecure_skip_verify,
        )
        # Our own retry loop, not the client's, so both APIs behave the same.
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def _post(self, body: bytes, precision: Precision) -> None:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            self._api.write(
                bucket=self.settings.bucket or "",
                org=self.settings.org or "",
                record=body,
                # Annotated as the WritePrecision class, whose members are plain str.
                write_precision=_V2_PRECISION[precision],  # type: ignore[arg-type]  # see above
            )
        except ApiException as exc:
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            raise_for_status(int(exc.status or 500), str(exc.body or exc.reason), retry_after)
        except (Urllib3Error, OSError) as exc:
            raise TransientError(f"cannot reach InfluxDB at {self.settings.url}: {exc}") from exc

    def close(self) -> None:
        """Close the client."""
        # influxdb-client leaves close() unannotated.
        self._client.close()  # type: ignore[no-untyped-call]  # see above
