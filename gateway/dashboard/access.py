"""The dashboard's access token: where it comes from and how a request shows it.

Sources, in order: ``SENSORGATE_DASHBOARD__TOKEN`` (through the settings), a token
file (``SENSORGATE_DASHBOARD__TOKEN_FILE`` or ``--token-file``), else a random token
made at start. Never the command line: argv is world-readable on a shared machine.

A request shows it as ``Authorization: Bearer TOKEN``, or with the ``sg_session``
cookie (HttpOnly, SameSite=Strict, path ``/api/``) the page gets from ``POST
/api/session`` with that header: an ``EventSource`` cannot set headers. Acknowledging
takes the header only, so no cookie alone can make a browser act (CSRF). Comparisons
are constant-time; the token is never logged nor put in an error message.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from contract.errors import ConfigError
from gateway.dashboard.settings import TOKEN_ENV, TOKEN_FILE_ENV, DashboardSettings

__all__ = ["COOKIE", "AccessToken", "bearer"]

COOKIE = "sg_session"
"""The cookie that carries the token for the page's event stream and reads."""
_MAX_TOKEN_CHARS = 512


@dataclass(frozen=True)
class AccessToken:
    """The token a request must show (``value`` None: no token is needed anywhere)."""

    value: str | None = field(repr=False)
    generated: bool = False
    """Made at start (so the command shows it once, in the URL it prints)."""

    def __post_init__(self) -> None:
        if self.value is not None and not 1 <= len(self.value) <= _MAX_TOKEN_CHARS:
            raise ConfigError("dashboard.token", f"must be 1 to {_MAX_TOKEN_CHARS} characters")

    @classmethod
    def from_settings(cls, settings: DashboardSettings) -> AccessToken:
        """Take the token from the settings or their file; make one if none is set.

        None is needed (``value`` None) only when the dashboard is read-only *and* its
        reads are public. Raises :class:`ConfigError` naming the source, never the value.
        """
        if settings.token is not None and settings.token_file is not None:
            raise ConfigError("dashboard.token", f"give {TOKEN_ENV} or a token file, not both")
        if settings.token is not None:
            return cls(settings.token.get_secret_value().strip())
        if settings.token_file is not None:
            return cls(_read_token_file(settings.token_file))
        if settings.read_only and settings.public_read:
            return cls(None)
        return cls(secrets.token_urlsafe(24), generated=True)

    def matches(self, given: str | None) -> bool:
        """Whether ``given`` is the token (constant time); always false without a token."""
        if self.value is None or not given:
            return False
        return hmac.compare_digest(given.encode("utf-8"), self.value.encode("utf-8"))


def bearer(authorization: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer TOKEN`` header, if that is what it is."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _read_token_file(path: Path) -> str:
    where = f"{TOKEN_FILE_ENV} / --token-file ({path})"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError("dashboard.token_file", f"cannot read {where}: {reason}") from None
    lines = text.strip().splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise ConfigError(
            "dashboard.token_file", f"{where} is empty; put the token on its first line"
        )
    if len(token) > _MAX_TOKEN_CHARS:
        raise ConfigError(
            "dashboard.token_file", f"the token in {where} is over {_MAX_TOKEN_CHARS} characters"
        )
    return token


TOKEN_SOURCES = f"{TOKEN_ENV}=... or --token-file FILE ({TOKEN_FILE_ENV})"
"""How to give the token, for messages that refuse it on the command line."""
