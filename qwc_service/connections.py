"""Connections: one company file, one Web Connector, one dedicated sync user."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .exceptions import InvalidInput, NotFound
from .models import Connection
from .passwords import Passwords


def braced_guid() -> str:
    """A GUID written the way the Web Connector writes them: ``{…}``, upper case."""
    return "{" + str(uuid.uuid4()).upper() + "}"


def add_connection(
    db: Session,
    *,
    name: str,
    username: str,
    password: str,
    passwords: Passwords,
    now: datetime,
    company_file: str = "",
) -> Connection:
    name, username = name.strip(), username.strip()
    if not name:
        raise InvalidInput("the connection name is empty")
    if not username:
        raise InvalidInput("the sync user name is empty")
    if not password:
        raise InvalidInput("the password is empty")
    if db.scalar(select(Connection.id).where(Connection.name == name)) is not None:
        raise InvalidInput(f"a connection named {name!r} already exists")
    if db.scalar(select(Connection.id).where(Connection.username == username)) is not None:
        # QBWC sends only the user name, so it must point at one connection.
        raise InvalidInput(
            f"the sync user {username!r} already belongs to another connection; "
            "each connection needs its own dedicated user"
        )
    connection = Connection(
        name=name,
        username=username,
        password_hash=passwords.hash(password),
        company_file=company_file.strip(),
        owner_id=braced_guid(),
        file_id=braced_guid(),
        enabled=True,
        created_at=now,
        updated_at=now,
    )
    db.add(connection)
    try:
        db.flush()
    except IntegrityError:
        raise InvalidInput(f"a connection named {name!r} or user {username!r} already exists") from None
    return connection


def get_connection(db: Session, name: str) -> Connection:
    connection = db.scalar(select(Connection).where(Connection.name == name))
    if connection is None:
        raise NotFound(f"no connection named {name!r}")
    return connection


def list_connections(db: Session) -> list[Connection]:
    return list(db.scalars(select(Connection).order_by(Connection.name)))


def set_password(db: Session, connection: Connection, password: str, passwords: Passwords, now: datetime) -> None:
    """Replace the sync user's password; the old one stops working at once."""
    if not password:
        raise InvalidInput("the password is empty")
    connection.password_hash = passwords.hash(password)
    connection.updated_at = now


def set_webhook(db: Session, connection: Connection, url: str, now: datetime) -> None:
    """Set (or with "" remove) the connection's webhook URL; a signing secret is made once."""
    url = url.strip()
    if url and not url.startswith(("https://", "http://")):
        raise InvalidInput(f"the webhook URL must start with https:// or http://, got {url!r}")
    connection.webhook_url = url or None
    if url and not connection.webhook_secret:
        connection.webhook_secret = secrets.token_urlsafe(32)
    connection.updated_at = now
