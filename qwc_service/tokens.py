"""Bearer tokens for the HTTP API.

A token is shown once, when it is made, and stored only as its SHA-256 hash:
a leaked database (or backup) lets no one call the API. Tokens are 256
random bits, so a plain hash is enough (no salt or slow hash is needed to
resist guessing), and looking one up by its hash means the comparison that
could leak timing is between hashes, never against the secret itself.

A token is scoped either to every connection or to one. A scoped token sees
and touches nothing else, and the API answers "not found" (never
"forbidden") for everything outside its scope, so it cannot even learn what
exists there.

``token_cli`` is the ``qwc-service token`` command group.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import click
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import connections
from .exceptions import InvalidInput, NotFound
from .models import ApiToken, Connection

#: Every token starts with this, so secret scanners and people can tell what it is.
TOKEN_PREFIX = "qwc_"
#: Random bytes in a token (urlsafe base64: 43 characters after the prefix).
TOKEN_BYTES = 32
#: How many leading characters are kept in clear, to tell tokens apart in listings.
SHOWN_PREFIX_LENGTH = 12
#: last_used_at is written at most this often per token, so that verifying a
#: token on every API call is a read, not a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
#: Longer "tokens" are not ours; refuse them before hashing.
MAX_TOKEN_LENGTH = 200


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown about a token: never the token or its hash."""

    name: str
    prefix: str
    #: The connection it is limited to; None = every connection.
    connection: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "prefix": self.prefix,
            "connection": self.connection,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True)
class Principal:
    """Who is calling the API: a valid, unrevoked token and its scope."""

    token_name: str
    #: None = every connection.
    connection_id: int | None
    connection_name: str | None

    def may_see(self, connection_id: int) -> bool:
        return self.connection_id is None or self.connection_id == connection_id


def create_token(db: Session, name: str, *, now: datetime, connection: str | None = None) -> tuple[str, TokenInfo]:
    """Make a token; returns ``(token, info)``. The token cannot be shown again."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("the token name must be 1 to 100 characters")
    existing = db.scalar(select(ApiToken).where(ApiToken.name == name))
    if existing is not None:
        state = " (revoked; names are kept for the record)" if existing.revoked_at else ""
        raise InvalidInput(f"a token named {name!r} already exists{state}")
    conn = connections.get_connection(db, connection) if connection is not None else None
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    row = ApiToken(
        name=name,
        token_hash=hash_token(token),
        prefix=token[:SHOWN_PREFIX_LENGTH],
        connection_id=conn.id if conn else None,
        created_at=now,
    )
    db.add(row)
    try:
        db.flush()
    except IntegrityError:  # a concurrent create of the same name
        raise InvalidInput(f"a token named {name!r} already exists") from None
    return token, _info(row, conn.name if conn else None)


def list_tokens(db: Session) -> list[TokenInfo]:
    rows = db.execute(
        select(ApiToken, Connection.name).outerjoin(Connection, Connection.id == ApiToken.connection_id)
        .order_by(ApiToken.name)
    ).all()
    return [_info(row, connection_name) for row, connection_name in rows]


def revoke_token(db: Session, name: str, *, now: datetime) -> TokenInfo:
    """Revoke by name; it stops working at once. Revoking twice changes nothing."""
    row = db.scalar(select(ApiToken).where(ApiToken.name == name).with_for_update())
    if row is None:
        raise NotFound(f"no token named {name!r}")
    if row.revoked_at is None:
        row.revoked_at = now
    connection_name = db.scalar(select(Connection.name).where(Connection.id == row.connection_id)) \
        if row.connection_id is not None else None
    return _info(row, connection_name)


def verify_token(db: Session, token: str, *, now: datetime) -> Principal | None:
    """The caller behind a token, or None for an unknown or revoked one.

    Only a token of our shape is hashed and looked up; the stored hash is
    compared again with ``hmac.compare_digest`` so that no code path compares
    secrets byte by byte.
    """
    if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
        return None
    digest = hash_token(token)
    row = db.execute(
        select(ApiToken.id, ApiToken.name, ApiToken.token_hash, ApiToken.connection_id, ApiToken.revoked_at,
               ApiToken.last_used_at, Connection.name)
        .outerjoin(Connection, Connection.id == ApiToken.connection_id)
        .where(ApiToken.token_hash == digest)
    ).first()
    if row is None or not hmac.compare_digest(row[2], digest) or row[4] is not None:
        return None
    token_id, name, _, connection_id, _, last_used_at, connection_name = row
    if last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION:
        # Conditional, so concurrent calls with one token write it once.
        db.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id,
                   or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - LAST_USED_RESOLUTION))
            .values(last_used_at=now)
        )
    return Principal(token_name=name, connection_id=connection_id, connection_name=connection_name)


def _info(row: ApiToken, connection_name: str | None) -> TokenInfo:
    return TokenInfo(
        name=row.name,
        prefix=row.prefix,
        connection=connection_name,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


# -- the command line ----------------------------------------------------------------


@contextmanager
def _transaction() -> Iterator[Session]:
    """A transaction on the configured, migrated database (the same QWC_* settings as every command)."""
    from . import database
    from .config import Settings

    engine = database.make_engine(Settings.from_env().database_url)
    try:
        database.upgrade(engine)
        with database.make_sessionmaker(engine).begin() as db:
            yield db
    finally:
        engine.dispose()


@click.group("token")
def token_cli() -> None:
    """Manage bearer tokens for the HTTP API (/api/v1)."""


@token_cli.command("create")
@click.argument("name")
@click.option("--connection", "connection_name", metavar="NAME",
              help="Limit the token to this connection (default: every connection).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def token_create(name: str, connection_name: str | None, as_json: bool) -> None:
    """Make a token and print it; it is shown only this once."""
    with _transaction() as db:
        token, info = create_token(db, name, now=_utcnow(), connection=connection_name)
    if as_json:
        click.echo(json.dumps({"token": token, **info.to_dict()}, indent=2))
        return
    scope = f"connection {info.connection!r}" if info.connection else "every connection"
    click.echo(f"token {info.name!r} for {scope}; store it now, it is not shown again:", err=True)
    click.echo(token)


@token_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def token_list(as_json: bool) -> None:
    """List tokens (names and prefixes, never the tokens)."""
    with _transaction() as db:
        infos = list_tokens(db)
    if as_json:
        click.echo(json.dumps([i.to_dict() for i in infos], indent=2))
        return
    if not infos:
        click.echo("no tokens yet: qwc-service token create NAME [--connection NAME]")
        return
    for info in infos:
        scope = f"connection={info.connection}" if info.connection else "all connections"
        used = info.last_used_at.isoformat() if info.last_used_at else "never"
        state = f"revoked {info.revoked_at.isoformat()}" if info.revoked_at else "active"
        click.echo(f"{info.name}\t{info.prefix}…\t{scope}\tcreated {info.created_at.isoformat()}\t"
                   f"last used {used}\t{state}")


@token_cli.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke a token by name; calls with it are refused from now on."""
    with _transaction() as db:
        info = revoke_token(db, name, now=_utcnow())
    click.echo(f"token {info.name!r} revoked")
