"""TLS client settings shared by every SensorGate client: MQTT links and InfluxDB.

One frozen model, :class:`TlsSettings`, is used by the edge agent, the gateway's
MQTT clients (source, sinks, ``alarms ack``, the dashboard) and its InfluxDB
clients, and :meth:`TlsSettings.ssl_context` turns it into the
:class:`ssl.SSLContext` that paho, httpx and urllib3 all accept, so every client
verifies the server the same way:

- the server's chain is checked against ``ca_file`` (the system's trust store
  when it is not set) and its name against the host connected to, or against
  ``server_name`` when that is set (connecting by IP address to a server whose
  certificate names it, or through a tunnel);
- ``cert_file`` and ``key_file`` are the client's own certificate (mutual TLS);
- TLS 1.2 at least; ``insecure_skip_verify`` turns all checking off and is meant for
  throwaway test set-ups only (off by default).

Example::

    >>> TlsSettings(ca_file=None).ssl_context().check_hostname
    True
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from contract.errors import ConfigError

__all__ = ["TlsSettings"]


class TlsSettings(BaseModel):
    """TLS to a server: whom to trust, which name to check, and our own certificate."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    ca_file: Path | None = None
    """PEM file of the CA(s) that signed the server's certificate; none: the system's
    trust store."""
    cert_file: Path | None = None
    """Our client certificate (PEM, may hold the chain) for mutual TLS; with ``key_file``."""
    key_file: Path | None = None
    """The private key of ``cert_file`` (PEM)."""
    key_password: SecretStr | None = None
    """Passphrase of an encrypted ``key_file``."""
    server_name: str | None = None
    """Name expected in the server's certificate (and sent as SNI) when it is not the
    host connected to; none: the host."""
    insecure_skip_verify: bool = False
    """Accept any server certificate and name. Never in production: anyone on the path
    can read and change the traffic."""

    @model_validator(mode="after")
    def _pairs(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS needs both)")
        if self.key_password is not None and self.key_file is None:
            raise ValueError("key_password needs key_file")
        if self.server_name is not None and not self.server_name.strip():
            raise ValueError("server_name must not be empty")
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """Return a new client context made from these settings.

        Raises :class:`~contract.errors.ConfigError` naming the field (``tls.ca_file``,
        ``tls.cert_file``) when a file cannot be read or does not hold what it should;
        the message never holds the key's passphrase.
        """
        ctx: ssl.SSLContext = (
            _NamedContext(ssl.PROTOCOL_TLS_CLIENT, self.server_name)
            if self.server_name
            else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        )
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.sslsocket_class = _ClosingSocket
        if self.ca_file is not None:
            _load("ca_file", self.ca_file, lambda: ctx.load_verify_locations(str(self.ca_file)))
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if self.cert_file is not None and self.key_file is not None:
            cert, key = str(self.cert_file), str(self.key_file)
            password = self.key_password.get_secret_value() if self.key_password else None
            _load("cert_file", self.cert_file, lambda: ctx.load_cert_chain(cert, key, password))
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


class _NamedContext(ssl.SSLContext):
    """A context that checks (and sends as SNI) one fixed server name.

    paho, httpx and urllib3 pass the host they connect to as ``server_hostname``;
    this context puts ``server_name`` in its place.
    """

    _server_name: str

    def __new__(cls, protocol: int, server_name: str | None = None) -> _NamedContext:
        ctx = super().__new__(cls, protocol)
        ctx._server_name = server_name or ""
        return ctx

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        kwargs["server_hostname"] = self._server_name
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        kwargs["server_hostname"] = self._server_name
        return super().wrap_bio(*args, **kwargs)


class _ClosingSocket(ssl.SSLSocket):
    """Closes itself when the handshake fails.

    paho drops a socket whose handshake failed (a certificate the CA did not sign)
    without closing it, and the garbage collector then reports an unclosed socket at
    every retry. "Try again" answers of a non-blocking handshake are not failures.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except OSError:
            self.close()
            raise


def _load(field: str, path: Path, load: Callable[[], object]) -> None:
    try:
        load()
    except (OSError, ssl.SSLError, ValueError) as exc:
        # ssl's messages name neither the file nor the passphrase: say which file.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"tls.{field}", f"cannot load {path}: {reason}") from None
