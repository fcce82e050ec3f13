"""Settings, read once from the environment.

Every setting is an environment variable starting with ``QWC_`` so that the
same configuration works for ``qwc-service serve``, a container and a test.
A secret may instead be given as a file path in ``QWC_<NAME>_FILE`` (Docker
and systemd credentials), which wins over the plain variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping

from . import __version__

DEFAULT_DATABASE_URL = "sqlite:///qwc-service.db"


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    #: SQLAlchemy URL; SQLite in the working directory needs no set-up.
    database_url: str = DEFAULT_DATABASE_URL
    #: Where ``serve`` listens. Loopback by default: exposing the service is a
    #: deliberate choice (QBWC on the same Windows machine can use localhost).
    host: str = "127.0.0.1"
    port: int = 8080
    #: Largest SOAP request body accepted. QuickBooks answers can be 100 MB of
    #: qbXML, and the SOAP layer escapes ``<``/``>`` which grows the text, so
    #: the default leaves room for a 100 MB response with heavy markup.
    max_body_bytes: int = 384 * 1024 * 1024
    #: A session unused this long is over (QBWC calls every few seconds while
    #: working, but one large query can keep QuickBooks busy for minutes).
    session_idle_seconds: int = 30 * 60
    #: No session lives longer than this, however busy.
    session_lifetime_seconds: int = 8 * 60 * 60
    #: A second Web Connector run for a connection with an open session gets
    #: "busy" unless the open one has been silent this long, in which case it
    #: is taken over. QBWC calls every few seconds while it works, but one big
    #: query can keep QuickBooks silent for minutes; ten minutes spares those
    #: while a crashed-and-restarted Web Connector waits at most one or two of
    #: its scheduled runs.
    session_takeover_seconds: int = 10 * 60
    #: Brute-force protection: this many failed logins within the window from
    #: one address (or from one address against one connection) lock that
    #: address out; the lockout doubles each time, up to lockout_max_seconds.
    lockout_failures: int = 10
    lockout_window_seconds: int = 15 * 60
    lockout_max_seconds: int = 24 * 60 * 60
    #: Failures against one connection from all addresses together that lock
    #: the connection for every address that has never logged in successfully.
    lockout_connection_failures: int = 50
    #: An address that logged in successfully this recently is never caught by
    #: a connection-wide lockout: an attacker elsewhere cannot lock out the
    #: real Web Connector.
    known_address_days: int = 30
    #: How long a verified password is remembered (as an HMAC, in memory) so
    #: that the every-minute poll does not pay for argon2 each time; 0 = never.
    credential_cache_seconds: int = 10 * 60
    #: Comma-separated addresses or networks of reverse proxies whose
    #: X-Forwarded-For header is believed; empty = believe no one.
    trusted_proxies: str = ""
    #: clientVersion policy: Web Connectors older than this are asked to
    #: upgrade ("O:<version>"); empty = accept every version.
    min_client_version: str = ""
    #: clientVersion policy: a warning every Web Connector shows ("W:<text>").
    client_version_warning: str = ""
    #: argon2id cost; raise on fast hardware, lower only in tests.
    argon2_time_cost: int = 3
    argon2_memory_cost: int = 65536
    argon2_parallelism: int = 4
    #: /status (the operators' page) uses HTTP Basic auth with these; it is
    #: switched off (404) until a password is set.
    status_user: str = "admin"
    status_password: str = ""
    #: /metrics requires "Authorization: Bearer <token>" when this is set.
    metrics_token: str = ""
    #: The public https URL of /qbwc (for .qwc files and doctor's checks).
    public_url: str = ""
    #: Log format: "plain" or "json"; qbXML payloads are never logged unless
    #: log_payloads is on, and then with log_redact fields masked.
    log_format: str = "plain"
    log_payloads: str = "off"
    log_redact: str = "SSN,CreditCardNumber,CreditCardInfo,AccountNumber,BirthDate,Password"
    #: Written by serverVersion; QBWC shows it under "More information".
    server_version: str = f"qwc-service {__version__}"
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from ``QWC_*`` variables, rejecting bad values early."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            name = f"QWC_{field.name.upper()}"
            raw = _read(env, name)
            if raw is None:
                continue
            if field.type in ("int", int):
                try:
                    number = int(raw.strip())
                except ValueError:
                    raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
                if number < 0 or (number == 0 and field.name != "port"):
                    raise ConfigError(f"{name} must be positive, got {number}")
                values[field.name] = number
            else:
                if not raw.strip():
                    raise ConfigError(f"{name} is set but empty")
                values[field.name] = raw.strip()
        return cls(**values)  # type: ignore[arg-type]


def _read(env: Mapping[str, str], name: str) -> str | None:
    file_name = env.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {file_name}: {exc.strerror}") from None
    return env.get(name)
